"""Sweeps of budget-aware pruning runs: Ray Tune orchestrates, Optuna searches, MLflow records.

Entry point: ``python sweeps/decathlon.py --help``. One concept per module:

* ``decathlon`` -- the driver (command line, validation, the ``Tuner``, the end-of-sweep summary);
* ``config`` -- presets (``presets/*.yaml``) < ``--config`` YAML < flags, resolved and validated;
* ``space`` -- Optuna search spaces over ``TrainConfig`` fields (define-by-run);
* ``search`` -- pinned samplers, journal/RDB storage, restore-safe ``OptunaSearch``, one study per budget;
* ``scheduler`` -- budget-fair ASHA (a trial only competes with trials of its budget, or that cost no more);
* ``trainable`` -- the Tune function trainable around ``bap.train.train`` (checkpoints, resume, shared data);
* ``prepare`` -- data loading and backbone pretraining, once per sweep (on a driver thread while a local Ray
  starts, else as a Ray task);
* ``local_ray`` -- a sweep's own local Ray, without the head services it never uses (dashboard API, autoscaler);
* ``workers`` -- trial workers a local Ray starts with itself, torch imported, for Tune's trial actors;
* ``tracking`` -- MLflow: parent run, one child run per trial;
* ``reachability`` -- "can the sweep log to this tracking store?", answered before anything starts;
* ``resume`` -- finding and reconciling an interrupted sweep;
* ``summary`` -- best trial per budget and the Pareto set.

Layout of one sweep ``<name>``: Tune results ``<storage>/<name>/trial_<id>/`` (``train/metrics.json``,
``train/pruned/``, ``train/trial_config.json``, ``checkpoint_*``), ``<storage>/<name>/sweep.yaml``; Optuna studies
``<name>`` (pareto) or ``<name>/budget=<b>`` (grid), trial user attribute ``tune_trial_id``; MLflow parent run tagged
``bap.role=sweep``/``bap.sweep_id=<name>`` and one child run per trial tagged ``bap.role=trial``, ``bap.trial_id``,
``bap.budget``, ``bap.sharing``, ``bap.preset``, ``bap.optuna_study``/``bap.optuna_trial``.
"""
