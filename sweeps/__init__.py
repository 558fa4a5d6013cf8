"""Sweeps of budget-aware pruning runs: Ray Tune orchestrates, Optuna searches, MLflow records.

Entry points: ``python sweeps/decathlon.py --help`` (also ``python -m sweeps`` and the ``bap-sweep`` script); from
Python, ``sweeps.run(SweepConfig(...)) -> SweepResult``. One concept per module:

* ``cli`` -- the command line: flags generated from ``SweepConfig``, resolution, the summary on stdout;
* ``config`` -- presets (``presets/*.yaml``) < ``--config`` YAML < flags, resolved and validated (pure, fast);
* ``plan`` -- what the sweep will do, validated against the training code and the tracking store before launch;
* ``runner`` -- one sweep: set-up futures while Ray starts, the ``Tuner``'s fit, the summary, the parent run's end;
* ``session`` -- the sweep's Ray as a context manager (a lean local Ray of its own, or a cluster it attaches to);
* ``tuner`` -- the Tune pieces: trainable, searcher, scheduler, callbacks, a new or restored ``Tuner``;
* ``space`` -- Optuna search spaces over ``TrainConfig`` fields (define-by-run);
* ``search`` -- a Tune searcher on Optuna's ask/tell, pinned samplers, journal/RDB storage, one study per budget;
* ``scheduler`` -- budget-fair ASHA (a trial only competes with trials of its budget, or that cost no more);
* ``trainable`` -- the Tune function trainable around the entry point's ``train`` (checkpoints, resume, shared data);
* ``prepare`` -- data loading and backbone pretraining, once per sweep;
* ``workers`` -- trial workers a local Ray starts with itself, torch imported, for Tune's trial actors;
* ``tracking`` -- MLflow: parent run, one child run per trial; ``reachability`` -- "can the sweep log there?";
* ``resume`` -- finding and reconciling an interrupted sweep;
* ``summary`` -- best trial per budget and the Pareto set (the analysis' engine), the ``SweepResult``;
* ``_ray_compat`` -- the only module touching Ray, Tune or Optuna internals, each access behind a canary test.

Layout of one sweep ``<name>`` (names in :mod:`bap.metrics`): Tune results ``<storage>/<name>/trial_<id>/``
(``train/metrics.json``, ``train/pruned/``, ``train/trial_config.json``, ``checkpoint_*``),
``<storage>/<name>/sweep.yaml``; Optuna studies ``<name>`` (pareto) or ``<name>/budget=<b>`` (grid), trial user
attribute ``tune_trial_id``; MLflow parent run tagged ``bap.role=sweep``/``bap.sweep_id=<name>`` and one child run
per trial tagged ``bap.role=trial``, ``bap.trial_id``, ``bap.budget``, ``bap.sharing``, ``bap.preset``,
``bap.optuna_study``/``bap.optuna_trial``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["SweepConfig", "SweepResult", "run"]

if TYPE_CHECKING:
    from sweeps.config import SweepConfig
    from sweeps.runner import run
    from sweeps.summary import SweepResult


def __getattr__(name: str) -> Any:
    # Lazy, so that `import sweeps.config` (the driver's validation) stays light.
    if name == "run":
        from sweeps.runner import run

        return run
    if name == "SweepConfig":
        from sweeps.config import SweepConfig

        return SweepConfig
    if name == "SweepResult":
        from sweeps.summary import SweepResult

        return SweepResult
    raise AttributeError(f"module 'sweeps' has no attribute {name!r}")
