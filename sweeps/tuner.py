"""The Ray Tune pieces of one sweep, built from its plan: trainable, searcher, scheduler, callbacks, ``Tuner``.

* the trainable is :func:`sweeps.trainable.run_trial` with the shared settings and the object-store data, and each
  trial's CPUs/GPUs;
* the searcher is one :class:`sweeps.search.AskTellSearcher` per budget (grid) or one multi-objective one (pareto),
  behind a ``ConcurrencyLimiter``;
* the scheduler is budget-fair ASHA (:mod:`sweeps.scheduler`) or FIFO;
* the callbacks: MLflow child runs (:class:`sweeps.tracking.TrialRunLogger`), Tune's ``result.json`` and
  ``progress.csv`` (the analysis reads ``result.json``), TensorBoard only with ``--tensorboard``, and the scheduler's
  state in Tune's experiment state;
* a new ``Tuner``, or the restored one (``--resume``) running with these fresh objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bap import metrics as M
from sweeps import _ray_compat
from sweeps.config import SweepConfig
from sweeps.plan import SweepPlan


@dataclass
class Prepared:
    """What the sweep's preparation and MLflow set-up handed over (:mod:`sweeps.run`)."""

    data_ref: Any  # the domains in Ray's object store (None: trials read the on-disk cache)
    backbone_ref: Any  # the pretrained backbone's bytes in the object store, or None
    pretrained: str | None  # its path, or None
    parent: Any  # the MLflow parent run (sweeps.tracking.SweepRun)
    ended: dict[str, dict[str, float]]  # --resume: trials MLflow already closed
    logged: dict[str, float]  # --resume: the last epoch each trial's MLflow run holds


def build_search(cfg: SweepConfig, sweep: str, fixed: dict[str, Any], defaults: dict[str, Any]) -> Any:
    """One study per budget (grid) or one multi-objective study (pareto); each new study's first trial runs the
    documented defaults (``start_from_defaults``), then the sampler searches around them."""
    from ray.tune.search import ConcurrencyLimiter

    from sweeps import search, space

    metrics, modes = search.objectives(cfg.objective, cfg.multi_objective, cfg.pareto_costs)

    def searcher(sampler: space.SpaceSampler, metric: Any, mode: Any, seed: int, name: str) -> Any:
        first = sampler.first_trial(defaults) if cfg.start_from_defaults else None
        return search.AskTellSearcher(sampler, metric, mode, sampler=search.make_sampler(cfg.sampler, seed,
                                      cfg.multi_objective), study_name=name, storage=cfg.optuna_storage, first=first)

    if cfg.multi_objective:
        name = search.study_name_for(sweep, None)
        sampler = space.SpaceSampler(cfg.space, budget_range=tuple(cfg.budget_range), study_name=name,
                                     defaults=fixed)
        inner: Any = searcher(sampler, metrics, modes, cfg.seed, name)
    else:
        per_budget = {}
        for i, b in enumerate(cfg.budgets):
            name = search.study_name_for(sweep, b)
            sampler = space.SpaceSampler(cfg.space, budget=b, study_name=name, defaults=fixed)
            per_budget[b] = searcher(sampler, metrics[0], modes[0], cfg.seed + i, name)
        inner = search.PerBudgetSearch(per_budget, metrics[0], modes[0])
    return ConcurrencyLimiter(inner, max_concurrent=cfg.max_concurrent)


def build_scheduler(cfg: SweepConfig, epochs: int) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    from sweeps.scheduler import BudgetFairASHA

    if not cfg.asha.enabled:
        return FIFOScheduler()
    # A budget grid keeps one bracket per budget, so every budget ends with its best trial; budgets searched on a
    # continuum rarely repeat, so there a trial is ranked against every trial that could dominate it.
    # Rungs compare what each trial would deliver now (its budget enforced), not its accuracy before it met it.
    peers = "cheaper_or_equal" if cfg.multi_objective else "same_budget"
    return BudgetFairASHA(M.feasible(cfg.objective), "max", max_t=epochs, grace_period=cfg.asha.grace_period,
                          reduction_factor=cfg.asha.reduction_factor, peers=peers)


def _reporter(cfg: SweepConfig) -> Any:
    from ray.tune import CLIReporter

    return CLIReporter(
        metric_columns={M.EPOCH: "epoch", M.MEAN_VAL_ACC: "val acc", M.UNION_MACS_RATIO: "MACs",
                        M.UNION_PARAMS_RATIO: "params", M.PRUNED_AGREEMENT: "pruned ok"},
        parameter_columns={M.BUDGET: "budget", "sharing": "sharing", M.SHARING_WEIGHT: "w_share", "lr": "lr"},
        max_report_frequency=30 if cfg.verbose <= 1 else 10,
        max_progress_rows=40,
    )


def build_trainable(plan: SweepPlan, prepared: Prepared) -> Any:
    from ray import tune

    from sweeps.trainable import run_trial

    cfg = plan.config
    fixed = dict(plan.fixed)
    if prepared.pretrained:
        fixed["pretrained"] = prepared.pretrained
    settings = {
        "entrypoint": cfg.entrypoint, "train": fixed, "threads": max(1, int(cfg.cpus_per_trial)),
        "fault": plan.fault, "ended": prepared.ended, "logged_epochs": prepared.logged,
        "backbone_bytes": [prepared.backbone_ref] if prepared.pretrained else None,
    }
    shared = [prepared.data_ref] if cfg.data_sharing == "object_store" else None
    return tune.with_resources(tune.with_parameters(run_trial, settings=settings, shared=shared),
                               {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial,
                                "custom_resources": dict(cfg.resources_per_trial)})


def build_callbacks(plan: SweepPlan, prepared: Prepared, scheduler: Any) -> tuple[list[Any], Any]:
    """(callbacks, the MLflow trial logger among them)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from sweeps.scheduler import SchedulerStateCallback
    from sweeps.tracking import TrialRunLogger

    cfg, parent = plan.config, prepared.parent
    fixed = {k: v for k, v in plan.defaults.items() if v is not None}  # every setting a trial runs with
    trial_logger = TrialRunLogger(
        cfg.tracking_uri, parent.experiment_id, parent.run_id, plan.sweep, storage_path=cfg.storage_path,
        fixed_params=fixed, tags={M.TAG_PRESET: cfg.preset},
    )
    callbacks = [trial_logger, JsonLoggerCallback(), CSVLoggerCallback()]
    if cfg.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
    if hasattr(scheduler, "get_state"):
        callbacks.append(SchedulerStateCallback(scheduler))
    return callbacks, trial_logger


def build_tuner(plan: SweepPlan, prepared: Prepared) -> tuple[Any, Any, Any]:
    """(the ``Tuner`` -- new, or restored with ``--resume`` --, its search algorithm, the MLflow trial logger)."""
    from ray import tune

    from sweeps.trainable import trial_dirname

    cfg = plan.config
    trainable = build_trainable(plan, prepared)
    scheduler = build_scheduler(cfg, plan.epochs)
    search_alg = build_search(cfg, plan.sweep, plan.fixed, plan.defaults)
    callbacks, trial_logger = build_callbacks(plan, prepared, scheduler)
    run_config = tune.RunConfig(
        name=plan.sweep, storage_path=cfg.storage_path, callbacks=callbacks, verbose=cfg.verbose,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=cfg.checkpoints_to_keep),
        failure_config=tune.FailureConfig(max_failures=cfg.max_failures), progress_reporter=_reporter(cfg),
    )
    tune_config = tune.TuneConfig(search_alg=search_alg, scheduler=scheduler, num_samples=cfg.total_trials,
                                  reuse_actors=True, trial_dirname_creator=trial_dirname)
    if cfg.resume:
        from sweeps.resume import repair_experiment_state

        repair_experiment_state(plan.experiment_dir)
        tuner = _ray_compat.restore_tuner(plan.experiment_dir, trainable, run_config=run_config,
                                          tune_config=tune_config)
    else:
        tuner = tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)
    return tuner, search_alg, trial_logger
