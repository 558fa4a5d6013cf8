"""Trial workers that are ready before the sweep starts, as a ``multiprocessing.Pool``'s are.

A new Ray worker spends ~2.5 s of CPU importing torch and Ray Tune before a trial's first step. Ray can start its
idle workers when the driver connects and import modules into them (``preload_python_modules``), but it hands such
a worker only to an actor with the *default* runtime environment, and Tune gives each trial actor one of its own:
``{"env_vars": {"PL_DISABLE_FORK": "1"}}`` (a PyTorch Lightning switch, ray-project/ray#28197) plus a few variables
it copies from the driver (cloud credentials, Ray Train switches).

The workers of a Ray that the driver starts itself inherit the driver's environment, so those per-actor variables
are redundant there. On such a Ray, :func:`worker_environment` puts Tune's variables into the environment before
``ray.init`` (and yields the settings that prestart and preload the workers), and :func:`trial_actors_inherit`
leaves them out of Tune's per-actor environment during ``Tuner.fit``: the trial actors land on the prestarted
workers, torch already imported. If Tune's per-actor variables are not the ones expected here (another Ray version),
nothing is changed and trials start workers of their own, as before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

# What Tune (ray/tune/execution/class_cache.py) gives every trial actor, besides the driver variables it copies.
TUNE_ACTOR_ENV = {"PL_DISABLE_FORK": "1"}
# Imported into each prestarted worker while the driver prepares the sweep (a trial imports the rest in ~0.05 s).
PRELOAD_MODULES = ("torch", "ray.tune")


def worth_warming(num_cpus: int | None, max_concurrent: int, cpus_per_trial: float) -> bool:
    """Ray prestarts one worker per CPU: warm them only if at least half will run trials (the others idle, each
    holding torch in memory, until the sweep ends)."""
    cpus = num_cpus or available_cpus()
    slots = max(1, min(max_concurrent, int(cpus // cpus_per_trial)))
    return cpus <= 2 * slots


def available_cpus() -> int:
    """The CPUs this process may run on (what a local Ray without ``num_cpus`` counts, short of cgroup quotas)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_ray_settings(warm: bool, num_cpus: int) -> dict[str, Any]:
    """``_system_config`` for the local ``ray.init`` of a sweep on ``num_cpus`` CPUs.

    Trial workers run at the driver's priority, as a ``multiprocessing.Pool``'s or a plain training script's would
    (Ray nices its workers to 15, so a trial yields the CPU to the driver and to Ray's own processes, and warm workers
    would import torch only once the driver idles). ``warm``: one worker per CPU started when the driver connects,
    with :data:`PRELOAD_MODULES` imported, and kept while idle (by default Ray keeps only as many idle workers as
    there are *unreserved* CPUs, so it kills them the moment Tune's placement groups reserve the CPUs, just before
    the trial actors would take them). Otherwise no worker is started in advance: it would not fit Tune's trial
    actors, so would only take CPU at start-up.
    """
    if warm:
        prestart = {"enable_worker_prestart": False, "prestart_worker_first_driver": True,
                    "preload_python_modules": list(PRELOAD_MODULES), "num_workers_soft_limit": int(num_cpus)}
    else:
        prestart = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}
    return {"worker_niceness": 0, **prestart}


@contextlib.contextmanager
def worker_environment() -> Iterator[None]:
    """Around a local ``ray.init`` (and the sweep): Tune's per-actor variables set in this process, whose environment
    the local Ray and its workers inherit."""
    saved = {name: os.environ.get(name) for name in TUNE_ACTOR_ENV}
    os.environ.update(TUNE_ACTOR_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def trial_actors_inherit() -> Iterator[bool]:
    """Around ``Tuner.fit`` on a Ray started inside :func:`worker_environment`: Tune's trial actors get the default
    runtime environment (their variables come from the workers' inherited environment). Yields whether it could."""
    try:
        from ray.tune.execution import class_cache
    except ImportError:
        yield False
        return
    defaults = getattr(class_cache, "DEFAULT_ENV_VARS", None)
    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    inherited = all(os.environ.get(name) == value for name, value in TUNE_ACTOR_ENV.items())
    if defaults != TUNE_ACTOR_ENV or propagated is None or not inherited:
        yield False
        return
    class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = {}, frozenset()
    try:
        yield True
    finally:
        class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = defaults, propagated
