"""What a sweep will do, decided and validated before anything starts: :func:`plan` -> :class:`SweepPlan`.

Validation that needs the training code (every fixed value and search-space extreme through ``TrainConfig``, the
domain names) and the network (the tracking store answers; an object-store ``--storage-path`` answers and has its
bucket) runs here, the two at once; a bad value raises
:class:`sweeps.config.ConfigError` naming it and the allowed values. Nothing is written and nothing is launched
before :func:`sweeps.run.launch`. Validation does not import torch (nor Ray Tune, unless ``--resume`` or an existing
sweep folder asks for it).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bap.entrypoint import load_entrypoint
from sweeps import config as C
from sweeps.config import ConfigError, SweepConfig
from sweeps.faults import FAULT_ENV, parse_fault


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep, ready to launch.

    Attributes:
        config: the resolved configuration.
        sweep: the sweep's name (new, or the one ``--resume`` continues).
        domains: the data's domains the trials train on.
        fixed: the ``TrainConfig`` values every trial shares (preset ``train`` plus data, domains, cache folder).
        defaults: every value a trial runs with when the search changes nothing: the entry point's ``TrainConfig``
            built from ``fixed`` (logged with each trial; the first trial of each study).
        epochs: epochs per trial.
        fault: the injected fault (tests; ``$BAP_SWEEP_INJECT_FAULT``), or None.
    """

    config: SweepConfig
    sweep: str
    domains: list[str]
    fixed: dict[str, Any]
    defaults: dict[str, Any]
    epochs: int
    fault: dict[str, Any] | None

    @property
    def experiment_dir(self) -> str:
        """The sweep's Tune experiment folder (or URI, its query kept at the end)."""
        from sweeps.resume import storage_join

        return storage_join(self.config.storage_path, self.sweep)

    @property
    def resolved(self) -> dict[str, Any]:
        """What ``sweep.yaml`` (next to the results and on the parent run) and ``--dry-run`` show."""
        return {**self.config.to_dict(), "name": self.sweep, "domains_resolved": self.domains}


def fixed_train_values(cfg: SweepConfig) -> dict[str, Any]:
    """The TrainConfig values every trial shares: preset ``train`` + data/domains/cache from the sweep flags."""
    values = dict(cfg.train)
    values["data"] = cfg.data_spec
    values["domains"] = list(cfg.domains) if cfg.domains else None
    if cfg.cache_dir:
        values["cache_dir"] = cfg.cache_dir
    return values


def resolve_sweep_name(cfg: SweepConfig) -> str:
    """The sweep's name: ``--name``, or ``<preset>-<date-time>``; with ``--resume`` the sweep to continue."""
    from sweeps import resume

    resume.check_storage(cfg.storage_path)  # an object store that does not answer fails here, not after launch
    if cfg.resume:
        return resume.find_sweep_to_resume(cfg.storage_path, cfg.preset, cfg.name)
    name = cfg.name or f"{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if resume.sweep_exists(cfg.storage_path, name):
        raise ConfigError(f"sweep {name!r} already exists under {resume.shown(cfg.storage_path)}; pass --resume to "
                          "continue it or --name to start a new one")
    return name


def _check_stores(cfg: SweepConfig) -> None:
    """The MLflow tracking store and the Optuna storage answer (or can be created)."""
    from sweeps.reachability import check_optuna_storage, check_tracking_uri

    check_tracking_uri(cfg.tracking_uri, timeout=cfg.tracking_timeout_s)
    check_optuna_storage(cfg.optuna_storage, timeout=cfg.tracking_timeout_s)


def _check_training(cfg: SweepConfig) -> list[str]:
    from sweeps import prepare, space

    try:
        budgets = cfg.budgets if cfg.mode == "grid" else list(cfg.budget_range)
        variants = space.validation_configs(cfg.space, budgets)
        return prepare.check_train_values(cfg.entrypoint, fixed_train_values(cfg), variants, cfg.data_spec,
                                          cfg.domains)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import the training entry point {cfg.entrypoint!r}: {exc}") from None
    except (ValueError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise ConfigError(str(msg)) from None


def check_environment(cfg: SweepConfig) -> list[str]:
    """Tracking store and Optuna storage reachable; training values, search space and domains valid. Returns the
    domain list.

    The two checks run at once: a bad value fails as soon as its own check does.
    """
    from sweeps import space

    space.parse_space(cfg.space)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="check-stores")
    try:
        tracking = pool.submit(_check_stores, cfg)
        domains = _check_training(cfg)
        tracking.result()
        return domains
    finally:
        pool.shutdown(wait=False)  # a failed check need not wait for the other one


def run_defaults(cfg: SweepConfig, fixed: dict[str, Any]) -> dict[str, Any]:
    """What a trial runs when the search changes nothing: the entry point's ``TrainConfig`` with the fixed values."""
    return dict(load_entrypoint(cfg.entrypoint).TrainConfig.from_dict(fixed).to_dict())


def plan(cfg: SweepConfig) -> SweepPlan:
    """Validate ``cfg`` and everything it names (see module docstring) and decide the sweep's name.

    Raises:
        ConfigError: a bad value, an unknown domain, an unreachable tracking store, a sweep that exists already
            (without ``--resume``) or none to resume.
    """
    sweep = resolve_sweep_name(cfg)
    domains = check_environment(cfg)
    try:
        fault = parse_fault(os.environ.get(FAULT_ENV))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    fixed = fixed_train_values(cfg)
    defaults = run_defaults(cfg, fixed)
    if defaults.get("epochs") is None:
        raise ConfigError(f"the entry point {cfg.entrypoint!r} has no default epochs: set train.epochs")
    timed = [c for c in cfg.pareto_costs if c in C.LATENCY_COSTS]
    if cfg.multi_objective and timed and not (defaults.get("latency_min_time_s") or 0) > 0:
        raise ConfigError(f"pareto_costs {', '.join(timed)} needs each trial to time its pruned model: "
                          "latency_min_time_s must be > 0 (--set latency_min_time_s=0.2)")
    return SweepPlan(cfg, sweep, domains, fixed, defaults, int(defaults["epochs"]), fault)
