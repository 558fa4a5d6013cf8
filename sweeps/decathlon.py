"""Sweep budget-aware pruning runs with Ray Tune + Optuna, every result in MLflow.

Usage::

    python sweeps/decathlon.py --preset smoke                      # minutes on a laptop CPU, offline
    python sweeps/decathlon.py --preset mini --num-samples 8       # the offline default at full quality
    python sweeps/decathlon.py --preset decathlon --data-root /data/decathlon-1.0 --gpus-per-trial 0.25
    python sweeps/decathlon.py --preset sketch --data-root /data/imagenet-to-sketch \
        --set pretrained=/data/resnet50-0676ba61.pth                 # ImageNet-to-Sketch, torchvision ResNet-50
    python sweeps/decathlon.py --preset smoke --resume             # continue the newest interrupted smoke sweep

    # the same, unchanged, on a running cluster (results must go to storage every node and the driver can reach):
    RAY_AUTH_MODE=token ray job submit --address http://head:8265 --working-dir . -- python sweeps/decathlon.py \
        --preset decathlon --data-root /shared/decathlon-1.0 --storage-path /shared/ray_results \
        --tracking-uri http://mlflow:5000 --optuna-storage postgresql://optuna@db/optuna

``python -m sweeps`` and the ``bap-sweep`` console script are the same command; from Python, ``sweeps.run(config)``.

What one sweep is: a Ray Tune ``Tuner`` over :func:`sweeps.trainable.run_trial` (one ``bap.train.train`` run per
trial), an Optuna study per budget (``--mode grid``) or one multi-objective study (``--mode pareto``) as the search
algorithm (:mod:`sweeps.search`), budget-fair ASHA early stopping (:mod:`sweeps.scheduler`), per-epoch checkpoints
with retries (``--max-failures``), and an MLflow parent run with one nested child run per trial
(:mod:`sweeps.tracking`). How it runs: :mod:`sweeps.runner`; its Ray: :mod:`sweeps.session`.

Configuration: a preset (``sweeps/presets/*.yaml``) < ``--config FILE.yaml`` < flags (:mod:`sweeps.cli`, generated
from :class:`sweeps.config.SweepConfig`); ``--set key=value`` fixes any training field. The resolved configuration is
written next to the results (``sweep.yaml``) and to the parent run. Bad values (preset, budgets outside (0, 1],
unknown domain, unreachable tracking store, data root without annotations, ...) stop the driver with one line on
stderr and exit code 2 before anything is launched (:mod:`sweeps.plan`).

Where results go (defaults, relative to the current folder): Tune results ``ray_results/<sweep>``; Optuna journal
``optuna_journal.log`` (study ``<sweep>`` or ``<sweep>/budget=<b>``); MLflow ``sqlite:///mlruns.db`` with artifacts
in ``mlruns/`` -- ``python -m analysis.ui`` (``make ui``) serves the MLflow UI and optuna-dashboard on them.

Resuming: ``--resume`` continues an interrupted sweep (``Tuner.restore``) after a Ctrl-C or a killed driver: finished
trials are not rerun, unfinished ones continue from their newest checkpoint, each keeps its one MLflow run, and no
Optuna trial stays RUNNING. See :mod:`sweeps.resume` for how the saved states are reconciled.

Clusters and ``ray job submit``: the driver connects to ``--address`` or ``$RAY_ADDRESS`` (set by ``ray job submit``);
otherwise it starts a local Ray of its own with ``--num-cpus``. Ray 2.60 enables token authentication by default:
submit from a shell with ``RAY_AUTH_MODE=token`` (the token ``ray start`` wrote under ``~/.ray``) or ``RAY_AUTH_TOKEN``;
only on a private machine set ``RAY_AUTH_MODE=disabled`` for both ``ray start`` and the client. With ``--working-dir .``
relative paths point into the job's temporary copy: give absolute/shared ``--storage-path``, ``--optuna-storage`` and
a tracking server. A driver started directly with ``--address`` (not through ``ray job submit``) ships ``bap``,
``sweeps`` and the entry point's package to the workers itself (``py_modules``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python sweeps/decathlon.py` from a checkout: make `sweeps` and `bap` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.cli import exit_fast, main  # noqa: E402

if __name__ == "__main__":
    exit_fast(main())
