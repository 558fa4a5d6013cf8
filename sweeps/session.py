"""The sweep's Ray, as a context manager: :class:`RaySession` starts (or attaches to) Ray and always stops what it
started.

* **A local Ray of its own** (no ``--address``, no ``$RAY_ADDRESS``): ``ray.init(address="local")`` -- a new Ray
  even when a ``ray start`` cluster runs on this machine -- without the dashboard API server and the autoscaler
  monitor, which a sweep never uses (:func:`sweeps._ray_compat.lean_head`; measured on 2 cores: a bare
  ``ray.init`` 1.9-2.0 s instead of 2.8-3.9 s, ``ray.shutdown`` 0.3 s instead of 1.4 s). When at least half its
  CPUs run trials at once, its workers start with it and import torch while the driver sets up, and Tune's trial
  actors take them (:mod:`sweeps.workers`). The trials import ``sweeps``/``bap`` from this checkout (``PYTHONPATH``).
  Every process of that Ray listens on 127.0.0.1 only (:func:`sweeps._ray_compat.loopback_only`), and none outlives
  the driver, even a ``kill -9``-ed one (:class:`sweeps.watchdog.RayWatchdog`).
* **A running cluster** (``--address``/``$RAY_ADDRESS``, e.g. under ``ray job submit``): connect; a driver started
  by hand ships ``bap``, ``sweeps`` and the entry point's package as ``py_modules`` (:func:`cluster_runtime_env`).
  A cluster is never started or stopped here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from sweeps import _ray_compat, workers
from sweeps.config import SweepConfig
from sweeps.watchdog import RayWatchdog

REPO_ROOT = Path(__file__).resolve().parents[1]


def starts_local_ray(cfg: SweepConfig) -> bool:
    """True if the session will start a local Ray (no cluster address, no Ray already running in this process)."""
    import ray

    return not ray.is_initialized() and (cfg.address or os.environ.get("RAY_ADDRESS") or "local") == "local"


def cluster_runtime_env(entrypoint: str, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """What a driver that connects to a running cluster itself ships to the workers, as ``py_modules``: ``bap``,
    ``sweeps`` and the entry point's top-level package unless it is installed (in site-packages). None under
    ``ray job submit``, whose ``--working-dir``/``--runtime-env`` already brings the code. A single-file entry
    module cannot be shipped this way: use ``ray job submit --working-dir``."""
    import importlib.util

    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in environ:
        return None
    folders = [REPO_ROOT / "bap", REPO_ROOT / "sweeps"]
    top = entrypoint.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(location)
        if "site-packages" not in folder.parts and "dist-packages" not in folder.parts and folder not in folders:
            folders.append(folder)
    return {"py_modules": [str(f) for f in folders]}


class RaySession(contextlib.AbstractContextManager["RaySession"]):
    """Ray for one sweep (module docstring). Construct it first -- :attr:`local` says whether it will start Ray,
    so the caller can overlap its own set-up with the start -- then ``with session:``.

    Attributes:
        local: it starts (and will stop) a local Ray.
        warm: that Ray prestarts the trial workers with torch imported.
        started: Ray is running because of this session.
    """

    def __init__(self, cfg: SweepConfig) -> None:
        self.cfg = cfg
        self.local = starts_local_ray(cfg)
        self.warm = self.local and workers.worth_warming(
            workers.ray_cpus(cfg.num_cpus), cfg.max_concurrent, cfg.cpus_per_trial, cfg.gpus_per_trial, cfg.num_gpus)
        self.started = False
        self._stack = contextlib.ExitStack()
        self._worker_env: dict[str, str] | None = None
        self.watchdog: RayWatchdog | None = None

    def __enter__(self) -> RaySession:
        import ray

        try:
            if not self.local:
                if not ray.is_initialized():
                    ray.init(address=self.cfg.address or os.environ["RAY_ADDRESS"], log_to_driver=True,
                             runtime_env=cluster_runtime_env(self.cfg.entrypoint, os.environ))
                return self
            if self.warm:
                self._worker_env = self._stack.enter_context(workers.worker_environment())
            self._start_local()
        except BaseException:
            self._stack.close()
            raise
        return self

    def _start_local(self) -> None:
        import ray

        paths = [str(REPO_ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))  # the local workers inherit it
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                  "_system_config": workers.local_ray_settings(self.warm,
                                                                               workers.ray_cpus(self.cfg.num_cpus))}
        if self.cfg.num_cpus:
            kwargs["num_cpus"] = self.cfg.num_cpus
        if self.cfg.num_gpus is not None:
            kwargs["num_gpus"] = self.cfg.num_gpus
        if self.cfg.object_store_memory_mb:
            kwargs["object_store_memory"] = int(self.cfg.object_store_memory_mb) * 1024 * 1024
        self.watchdog = RayWatchdog.start()  # before ray.init: a driver killed during it leaves nothing either
        if self.watchdog is not None:
            self._stack.callback(self.watchdog.stop)  # after ray.shutdown (stop), or after a failed ray.init
        with contextlib.ExitStack() as init:
            if self.watchdog is not None:
                init.enter_context(self.watchdog.marking())
            kwargs.update(init.enter_context(_ray_compat.loopback_only()))
            init.enter_context(_ray_compat.lean_head())
            ray.init(address="local", **kwargs)  # "local": our own, even when a `ray start` cluster runs here
        self.started = True
        if self.watchdog is not None:
            self.watchdog.watch_session(_ray_compat.ray_session_dir())

    @contextlib.contextmanager
    def trial_actors(self) -> Iterator[bool]:
        """Around ``Tuner.fit``: trial actors land on the prestarted workers when they can; yields whether."""
        if self._worker_env is None:
            yield False
            return
        with workers.trial_actors_inherit(self._worker_env) as inherited:
            yield inherited

    def stop(self) -> None:
        """Stop the local Ray now (idempotent); a cluster is left running."""
        if self.started:
            import ray

            ray.shutdown()
            self.started = False
        self._stack.close()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def check_resources(cfg: SweepConfig) -> None:
    """Raise ConfigError if no node of the running Ray can hold one trial (its CPUs, GPUs and custom resources, all
    on one node, as its placement needs): such a sweep would wait forever. A cluster whose nodes start on demand can
    skip this (``--no-check-resources``)."""
    import ray

    from sweeps.config import ConfigError

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    flags = {"CPU": "--cpus-per-trial", "GPU": "--gpus-per-trial"}
    wants = {name: float(amount) for name, amount in
             {"CPU": cfg.cpus_per_trial, "GPU": cfg.gpus_per_trial, **cfg.resources_per_trial}.items() if amount > 0}
    if any(all(float(node.get(name, 0.0)) + 1e-9 >= want for name, want in wants.items()) for node in nodes):
        return
    lines = []
    for name, want in wants.items():
        largest = max((float(node.get(name, 0.0)) for node in nodes), default=0.0)
        total = sum(float(node.get(name, 0.0)) for node in nodes)
        flag = flags.get(name, f"--resources-per-trial {name}={want:g}")
        lines.append(f"{want:g} {name} ({flag}): at most {largest:g} on one node, {total:g} in all")
    raise ConfigError(
        f"no node of this Ray ({len(nodes)} node(s)) can hold one trial, which asks for " + "; ".join(lines)
        + ". Lower what a trial asks for, add such nodes, or pass --no-check-resources if the cluster starts them "
        "on demand")
