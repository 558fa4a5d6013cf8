"""Trial workers that are ready before the sweep starts, as a ``multiprocessing.Pool``'s are.

A new Ray worker spends ~2.5 s of CPU importing torch and Ray Tune before a trial's first step. Ray can start its
idle workers when the driver connects and import modules into them (``preload_python_modules``), but it hands such
a worker only to an actor with the *default* runtime environment, and Tune gives each trial actor one of its own:
``{"env_vars": {"PL_DISABLE_FORK": "1"}}`` (a PyTorch Lightning switch, ray-project/ray#28197) plus the driver's
values of a few variables it propagates (cloud credentials, Ray Train switches).

The workers of a Ray that the driver starts itself inherit the driver's environment, so those per-actor variables
are redundant there. On such a Ray, :func:`worker_environment` puts Tune's variables into the environment before
``ray.init``, :func:`local_ray_settings` makes Ray prestart and preload the workers, and
:func:`trial_actors_inherit` leaves the variables out of Tune's per-actor environment during ``Tuner.fit``: the
trial actors land on the prestarted workers, torch already imported. If Tune's per-actor variables are not the
ones expected here (another Ray version), or a propagated one changed since ``ray.init``, nothing is changed and
trials start workers of their own, as before. :func:`worth_warming` says when prestarting pays.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from sweeps import _ray_compat

ray_cpus = _ray_compat.ray_cpus  # the CPUs a local Ray will have, before it starts

# What Tune gives every trial actor (_ray_compat.tune_actor_env), besides the driver variables it copies.
TUNE_ACTOR_ENV = {"PL_DISABLE_FORK": "1"}
# Imported into each prestarted worker while the driver prepares the sweep (what a trial worker spends its start on).
PRELOAD_MODULES = ("torch", "ray.tune")


def worth_warming(cpus: int, max_concurrent: int, cpus_per_trial: float, gpus_per_trial: float = 0.0,
                  num_gpus: int | None = None) -> bool:
    """Ray prestarts one worker per CPU (of ``cpus``): warm them only if at least half will run trials at once (the
    others idle, each holding torch in memory, until the sweep ends). GPU trials need a known ``num_gpus``."""
    slots = min(max_concurrent, int(cpus / cpus_per_trial + 1e-9))
    if gpus_per_trial > 0:
        if num_gpus is None:
            return False
        slots = min(slots, int(num_gpus / gpus_per_trial + 1e-9))
    return slots >= 1 and cpus <= 2 * slots


def local_ray_settings(warm: bool, num_cpus: int) -> dict[str, Any]:
    """``_system_config`` for the local ``ray.init`` of a sweep on ``num_cpus`` CPUs.

    Trial workers run at the driver's priority, as a ``multiprocessing.Pool``'s or a plain training script's would
    (Ray nices its workers to 15, so a trial yields the CPU to the driver and to Ray's own processes, and warm
    workers would import torch only once the driver idles). ``warm``: one worker per CPU started when the driver
    connects, with :data:`PRELOAD_MODULES` imported, and kept while idle (by default Ray keeps only as many idle
    workers as there are *unreserved* CPUs, so it kills them the moment Tune's placement groups reserve the CPUs,
    just before the trial actors would take them). Otherwise no worker is started in advance: it would not fit
    Tune's trial actors, so would only take CPU at start-up.
    """
    if warm:
        prestart = {"enable_worker_prestart": False, "prestart_worker_first_driver": True,
                    "preload_python_modules": list(PRELOAD_MODULES), "num_workers_soft_limit": int(num_cpus)}
    else:
        prestart = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}
    return {"worker_niceness": 0, **prestart}


@contextlib.contextmanager
def worker_environment() -> Iterator[dict[str, str]]:
    """Around a local ``ray.init`` and the sweep: Tune's per-actor variables set in this process, whose environment
    the local Ray and its workers inherit. Yields that environment (a copy) for :func:`trial_actors_inherit`."""
    saved = {name: os.environ.get(name) for name in TUNE_ACTOR_ENV}
    os.environ.update(TUNE_ACTOR_ENV)
    try:
        yield dict(os.environ)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def trial_actors_inherit(worker_env: Mapping[str, str]) -> Iterator[bool]:
    """Around ``Tuner.fit`` on a Ray started with ``worker_env`` (from :func:`worker_environment`): Tune's trial
    actors get the default runtime environment, since the workers already have every variable Tune would give
    them. Yields whether it could (False: Tune's variables are not as expected, or differ from the workers')."""
    tune_env = _ray_compat.tune_actor_env()
    if tune_env is None:
        yield False
        return
    defaults, propagated = tune_env
    same = defaults == TUNE_ACTOR_ENV and all(
        worker_env.get(name) == value for name, value in TUNE_ACTOR_ENV.items()) and all(
        worker_env.get(name) == os.environ.get(name) for name in propagated)
    if not same:
        yield False
        return
    with _ray_compat.trial_actors_inherit():
        yield True
