"""The one module that reaches into Ray, Ray Tune and Optuna internals: what the sweep needs and no public API offers.

Everything else in ``sweeps/`` uses public APIs only. Each function here names the internal it touches, falls back (or
says so) when that internal moved, and has a canary test in ``tests/sweeps/test_ray_compat.py`` that exercises it on
the installed versions, so an upgrade that moves one fails there -- loudly, in one place -- and not somewhere in a
sweep. The versions these were last checked against are ``[tool.bap-sweeps.known-good]`` in ``pyproject.toml``.

What is here and why:

* :func:`lean_head` -- a local Ray without the dashboard API server and the autoscaler monitor (``Node`` methods);
  Ray has no switch for either. Saves ~1-2 s of start-up and ~1 s at shutdown on 2 cores (``bench/RESULTS.md``).
* :func:`loopback_only` -- a local Ray whose every process (GCS, raylet, agents, workers, driver) listens on
  127.0.0.1 only: Ray's own local-only mode (``ray_constants.ENABLE_RAY_CLUSTER``, off on macOS/Windows) around
  ``ray.init(_node_ip_address="127.0.0.1")``. On Linux Ray otherwise binds every port on all interfaces, and turns a
  loopback ``_node_ip_address`` back into the machine's address.
* :func:`ray_session_dir` / :func:`session_dir_pattern` -- the running Ray's session directory, and the one a local
  head started by a given process will have (``<temp root>/session_<time>_<pid>``), for the session's watchdog
  (:class:`sweeps.watchdog.RayWatchdog`) to recognise that Ray's processes after its driver died.
* :func:`tune_actor_env` / :func:`trial_actors_inherit` -- the environment Tune gives every trial actor
  (``ray.tune.execution.class_cache``); left out while the workers of our own Ray already have it, so the trial
  actors land on the workers Ray prestarted with torch imported (:mod:`sweeps.workers`).
* :func:`ray_cpus` -- Ray's own CPU count (cgroup quotas included), to size the warm workers before ``ray.init``.
* :func:`trial_storage` -- inside a trial: the storage filesystem and the trial's folder on it (Tune's
  ``StorageContext``; ``get_trial_dir()`` gives only the node-local working folder).
* :func:`restore_tuner` -- ``Tuner.restore`` with fresh callbacks, reporter, failure config, scheduler and searcher
  (the public ``restore`` takes only the trainable; the pickled ones would replace ours).
* :func:`ray_temp_root` -- the folder of Ray's session directories (``/tmp/ray`` unless ``--temp-dir``), where the
  driver stages Tune's experiment state.
* :func:`optuna_trial` -- an Optuna ``Trial`` for an existing trial number, to report to, set attributes on, or
  adopt a RUNNING trial a dead driver asked for (Optuna's public API creates trials only through ``ask``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------------------------------------------------------
# Ray: the local head
# ---------------------------------------------------------------------------------------------------------------
SKIPPED_SERVICES = ("start_api_server", "start_monitor")  # ray._private.node.Node methods


def _not_started(*args: Any, **kwargs: Any) -> None:
    return None


def ray_node_class() -> Any:
    """``ray._private.node.Node``, or None if it moved."""
    try:
        from ray._private.node import Node
    except ImportError:
        return None
    return Node


@contextlib.contextmanager
def lean_head(node_class: Any = None) -> Iterator[bool]:
    """Around a local ``ray.init``: the head starts without the dashboard API server and the autoscaler monitor.

    Yields whether it could (False: ``node_class``, by default Ray's ``Node``, lacks those methods; Ray then starts
    as usual). The methods are restored when the block ends, error or not.
    """
    node_class = ray_node_class() if node_class is None else node_class
    saved = {name: getattr(node_class, name, None) for name in SKIPPED_SERVICES}
    if node_class is None or not all(callable(method) for method in saved.values()):
        yield False
        return
    for name in SKIPPED_SERVICES:
        setattr(node_class, name, _not_started)
    try:
        yield True
    finally:
        for name, method in saved.items():
            setattr(node_class, name, method)


def ray_cpus(num_cpus: int | None) -> int:
    """The CPUs of a local ``ray.init(num_cpus=num_cpus)``: Ray's own count (cgroup quotas included) if None."""
    if num_cpus:
        return int(num_cpus)
    try:
        from ray._private.utils import get_num_cpus

        return max(1, int(get_num_cpus()))
    except (ImportError, AttributeError):  # moved: the machine's count, as Ray used to
        return os.cpu_count() or 1


def ray_session_dir() -> str | None:
    """The running Ray's session directory (``<temp root>/session_*``; None when Ray is not initialised here)."""
    try:
        import ray
        from ray._private import worker

        if not ray.is_initialized():
            return None
        return worker._global_node.get_session_dir_path()
    except (ImportError, AttributeError):
        return None


def ray_temp_root() -> str | None:
    """The folder holding the running Ray's ``session_*`` directories (None when Ray is not initialised here)."""
    session_dir = ray_session_dir()
    return None if session_dir is None else os.path.dirname(session_dir)


def session_dir_pattern(pid: int) -> str | None:
    """A glob matching the session directory of a local head that process ``pid`` starts with ``ray.init`` and no
    ``_temp_dir`` (``ray._private.node.Node``: ``<default temp root>/session_<date_time>_<pid>``); None if moved.

    Older session directories of the same pid match too: check their creation time.
    """
    try:
        from ray._common.utils import get_default_ray_temp_dir
    except ImportError:
        return None
    return os.path.join(get_default_ray_temp_dir(), f"session_*_{int(pid)}")


LOOPBACK = "127.0.0.1"


@contextlib.contextmanager
def loopback_only() -> Iterator[dict[str, Any]]:
    """Around a local ``ray.init``: every process of the new Ray listens on 127.0.0.1 only. Yields the arguments to
    add to that ``ray.init`` (empty if Ray's switch moved: Ray then binds all interfaces, as usual).

    Ray's C++ servers (GCS, raylet, each worker's core worker) bind 127.0.0.1 instead of all interfaces when the
    node's IP is 127.0.0.1, and the agents follow the node's IP. But ``ray.init`` replaces a loopback
    ``_node_ip_address`` with the machine's address (``services.resolve_ip_for_localhost``) unless Ray runs in its
    local-only mode, ``ray_constants.ENABLE_RAY_CLUSTER`` False -- the default on macOS and Windows, read when
    ``ray.init`` resolves the address. It is set only while the block runs; the Ray started keeps its address.
    Never use this for a connection to a cluster.
    """
    try:
        from ray._private import ray_constants
    except ImportError:
        yield {}
        return
    if not isinstance(getattr(ray_constants, "ENABLE_RAY_CLUSTER", None), bool):
        yield {}
        return
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield {"_node_ip_address": LOOPBACK}
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


# ---------------------------------------------------------------------------------------------------------------
# Ray Tune: trial actors' environment
# ---------------------------------------------------------------------------------------------------------------
def tune_actor_env() -> tuple[dict[str, str], frozenset[str]] | None:
    """(variables Tune sets on every trial actor, driver variables it copies onto them), or None if moved."""
    try:
        from ray.tune.execution import class_cache
    except ImportError:
        return None
    defaults = getattr(class_cache, "DEFAULT_ENV_VARS", None)
    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if not isinstance(defaults, dict) or propagated is None:
        return None
    return dict(defaults), frozenset(propagated)


@contextlib.contextmanager
def trial_actors_inherit() -> Iterator[None]:
    """Inside the block Tune gives trial actors no environment of their own (the default runtime environment).

    Only call it when :func:`tune_actor_env` is not None; the caller checks that the workers already have what Tune
    would have set (:func:`sweeps.workers.trial_actors_inherit`).
    """
    from ray.tune.execution import class_cache

    defaults, propagated = class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE
    class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = {}, set()
    try:
        yield
    finally:
        class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = defaults, propagated


# ---------------------------------------------------------------------------------------------------------------
# Ray Tune: a trial's storage, restoring a tuner
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialStorage:
    """Where a running trial's results go.

    Attributes:
        filesystem: the pyarrow filesystem of the sweep's storage path.
        trial_path: the trial's folder on it (``<storage>/<sweep>/trial_<id>``).
        working_dir: the trial's node-local working folder.
    """

    filesystem: Any
    trial_path: str
    working_dir: str

    @property
    def is_local(self) -> bool:
        import pyarrow.fs as pafs

        return isinstance(self.filesystem, pafs.LocalFileSystem)


def trial_storage() -> TrialStorage:
    """Inside a Tune trial: its storage (``tune.get_context().get_storage()``, a DeveloperAPI ``StorageContext``)."""
    from ray import tune

    storage = tune.get_context().get_storage()
    return TrialStorage(storage.storage_filesystem, storage.trial_fs_path, storage.trial_working_directory)


def restore_tuner(path: str, trainable: Any, *, run_config: Any, tune_config: Any) -> Any:
    """``Tuner.restore(path)`` (unfinished trials resumed, errored ones not) that runs with ``run_config``'s
    callbacks, progress reporter and failure config and ``tune_config``'s scheduler and search algorithm, instead of
    the objects pickled with the experiment (Tune loads their saved state into these)."""
    from ray import tune

    tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)
    internal = tuner._local_tuner
    internal._run_config.callbacks = run_config.callbacks
    internal._run_config.progress_reporter = run_config.progress_reporter
    internal._run_config.failure_config = run_config.failure_config
    internal._tune_config.scheduler = tune_config.scheduler
    internal._tune_config.search_alg = tune_config.search_alg
    return tuner


# ---------------------------------------------------------------------------------------------------------------
# Optuna
# ---------------------------------------------------------------------------------------------------------------
def optuna_trial(study: Any, number: int) -> Any:
    """An ``optuna.trial.Trial`` for trial ``number`` of ``study`` (its storage id via the study's storage)."""
    import optuna

    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, int(number))
    return optuna.trial.Trial(study, trial_id)
