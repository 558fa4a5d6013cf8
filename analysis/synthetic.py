"""A synthetic sweep written the way ``sweeps/`` writes a real one: an MLflow store and a Ray Tune folder.

For tests, demos and trying the report without training anything::

    python -m analysis.synthetic --out /tmp/demo          # then run the report command it prints

What is written (conventions of ``sweeps/tracking.py`` and ``sweeps/trainable.py``):

* MLflow (a SQLite store): one parent run (tags ``bap.role=sweep``, ``bap.sweep_id``) and one child run per trial
  (``bap.role=trial``, ``bap.sweep_id``, ``bap.trial_id``, ``bap.budget``, ``bap.sharing``, ``mlflow.parentRunId``),
  params = the shared training settings plus the trial's configuration, the flat per-epoch metrics of
  :mod:`bap.metrics` logged with ``step = epoch`` (``unpruned_params`` / ``unpruned_macs`` and the sweep's
  ``resumed_from_epoch`` included), ``metrics.json`` and ``pruned/architecture.json`` as artifacts of finished
  trials, and the status the trial ended with.
* Tune: ``<storage>/<sweep id>/<trial folder>/`` with ``params.json`` (the trial's configuration), ``result.json``
  (one line per epoch, Tune's bookkeeping keys included) and ``train/metrics.json`` + ``train/pruned/architecture.json``
  for finished trials; ``error.txt`` for failed ones.

Costs are those of a real :class:`bap.model.MultiDomainResNet26` (counted with :mod:`bap.cost`, imported only here,
when a sweep is written: reading it back needs no torch), scaled per trial by a kept fraction near the budget; accuracies grow with the kept fraction, with noise, quantised like a finite
validation set. Some trials are exact repeats (ties), some are stopped early (``KILLED``: no final metrics), one can
fail. The values are made up; only their shape and bookkeeping are those of a sweep. ``unpruned_costs=False`` writes
a sweep as it was logged before the unpruned costs were (no ``unpruned_*`` metrics, no ``metrics.json["unpruned"]``).
``latency=True`` adds the measured CPU latency metrics of a finished trial's final report (``latency_cpu_b1_ms``,
``latency_cpu_b64_ms``, their ratios, per domain and flat = the slowest domain's, ``latency_threads``,
``latency_neighbours``): milliseconds roughly proportional to MACs, with noise; the first ``contended`` finished
trials are timed "while" 2 other runs shared the machine (``latency_neighbours = 2``, slower and noisier). They are
drawn from a generator of their own, so every other value is the same with or without them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.table import STATUS_FAILED, STATUS_FINISHED, STATUS_KILLED, param_text
from bap import metrics as M

__all__ = ["DEFAULT_DOMAINS", "SyntheticSweep", "write_synthetic_sweep"]

DEFAULT_DOMAINS: dict[str, int] = {"aircraft": 100, "cifar100": 100, "dtd": 47, "gtsrb": 43}  # name -> classes
_TOP_ACCURACY = {"aircraft": 0.55, "cifar100": 0.8, "dtd": 0.5, "gtsrb": 0.97}
_SHARING = ("none", "union", "jaccard")


@dataclass(frozen=True)
class SyntheticSweep:
    """Where a synthetic sweep was written (the same attributes as the smoke-sweep test fixture).

    Attributes:
        tracking_uri: The SQLite MLflow store.
        experiment: The MLflow experiment name.
        storage_path: The Tune results root (the experiment folder is ``storage_path / sweep_id``).
        sweep_id: The sweep's id (tag ``bap.sweep_id``; the Tune experiment folder's name).
        parent_run_id: The sweep's MLflow parent run.
        trials: Number of trials written.
    """

    tracking_uri: str
    experiment: str
    storage_path: str
    sweep_id: str
    parent_run_id: str
    trials: int


@dataclass(frozen=True)
class _Architecture:
    config: dict[str, Any]
    input_size: tuple[int, int, int]
    domain_reference: dict[str, tuple[int, int]]  # params, MACs of each domain's single-domain network
    domain_fixed: dict[str, tuple[int, int]]  # params, MACs of its BNs + head (not pruned)
    union_reference: tuple[int, int]
    conv: tuple[int, int]  # params, MACs of all switched convolutions
    extra_union_params: int  # every domain's BNs and heads
    unpruned: tuple[int, int]  # params, MACs of the model with every switch on (bap.cost.unpruned_cost)


def _architecture(domains: Mapping[str, int], width: float, blocks: int, size: int) -> _Architecture:
    from bap.cost import count_layer_costs, reference_cost, unpruned_cost
    from bap.model import MultiDomainResNet26

    model = MultiDomainResNet26(dict(domains), width=width, blocks=blocks)
    input_size = (3, size, size)
    domain_reference, domain_fixed = {}, {}
    for d in model.domains:
        ref = reference_cost(model, d, input_size)
        layers = count_layer_costs(model, d, input_size)
        fixed = layers["norms"] + layers["head"]
        domain_reference[d] = (ref.params, ref.macs)
        domain_fixed[d] = (fixed.params, fixed.macs)
    union = count_layer_costs(model, None, input_size)
    extra = union["norms"] + union["head"]
    conv_params = sum(c.params for k, c in union.items() if k not in ("norms", "head"))
    conv_macs = sum(c.macs for k, c in union.items() if k not in ("norms", "head"))
    ref = reference_cost(model, None, input_size)
    unpruned = unpruned_cost(model, input_size)
    return _Architecture(dict(model.config), input_size, domain_reference, domain_fixed, (ref.params, ref.macs),
                         (conv_params, conv_macs), extra.params, (unpruned.params, unpruned.macs))


def _epoch_metrics(arch: _Architecture, budget: float, sharing: str, rng: np.random.Generator,
                   epoch: int, epochs: int, unpruned_costs: bool = True) -> dict[str, float]:
    """What a sweep trial reports for one epoch (bap.train's vocabulary, plus the sweep's ``resumed_from_epoch``);
    the last epoch is budget-enforced and pruned."""
    from bap.score import DECATHLON_BASELINE_ERRORS, decathlon_score

    progress = (epoch + 1) / epochs
    out: dict[str, float] = {M.BUDGET: budget, M.EPOCH: float(epoch + 1)}
    kept = {}
    accs = {}
    conv_p, conv_m = arch.conv
    for d in arch.domain_reference:
        fraction = float(np.clip(budget * rng.uniform(0.85, 1.0) + (1 - progress) * 0.1, 0.02, 1.0))
        fraction = round(fraction * 64) / 64  # channel counts are discrete
        kept[d] = fraction
        ref_p, ref_m = arch.domain_reference[d]
        fix_p, fix_m = arch.domain_fixed[d]
        params = round((ref_p - fix_p) * fraction) + fix_p
        macs = round((ref_m - fix_m) * min(1.0, fraction * rng.uniform(0.95, 1.05))) + fix_m
        top = _TOP_ACCURACY.get(d, 0.7)
        acc = top * (1 - 0.7 * math.exp(-5 * fraction)) * (0.8 + 0.2 * progress) + rng.normal(0, 0.015)
        acc = float(np.clip(round(acc * 500) / 500, 0.0, 1.0))  # a 500-image validation set
        accs[d] = acc
        out[M.domain_metric(M.VAL_ACC, d)] = acc
        out[M.domain_metric(M.USAGE, d)] = fraction
        out[M.domain_metric(M.SWITCHES_ON, d)] = fraction
        out[M.domain_metric(M.PARAMS, d)] = float(params)
        out[M.domain_metric(M.MACS, d)] = float(macs)
        out[M.domain_metric(M.PARAMS_RATIO, d)] = params / ref_p
        out[M.domain_metric(M.MACS_RATIO, d)] = macs / ref_m
        out[M.domain_metric(M.DUAL, d)] = float(rng.uniform(0, 2))
        out[M.domain_metric(M.DOMAIN_TRAIN_LOSS, d)] = float(rng.uniform(0.5, 2.0))
    overlap = {"none": 1.35, "union": 1.05, "jaccard": 1.15}[sharing]
    union_fraction = min(1.0, max(kept.values()) * overlap * rng.uniform(0.95, 1.05))
    union_params = round(conv_p * union_fraction) + arch.extra_union_params
    head_macs = max(fix_m for _, fix_m in arch.domain_fixed.values())
    union_macs = round(conv_m * union_fraction) + head_macs
    out[M.MEAN_VAL_ACC] = sum(accs.values()) / len(accs)
    baseline = all(d in DECATHLON_BASELINE_ERRORS for d in accs)
    out[M.SCORE] = decathlon_score(accs) if baseline else math.nan
    out[M.UNION_PARAMS] = float(union_params)
    out[M.UNION_MACS] = float(union_macs)
    out[M.UNION_PARAMS_RATIO] = union_params / arch.union_reference[0]
    out[M.UNION_MACS_RATIO] = union_macs / arch.union_reference[1]
    out[M.TRAIN_LOSS] = float(rng.uniform(1, 3))
    out[M.SHARING_LOSS] = float(rng.uniform(0, 1))
    out[M.SHARING_WEIGHT] = 1.0
    if unpruned_costs:
        out[M.UNPRUNED_PARAMS], out[M.UNPRUNED_MACS] = (float(v) for v in arch.unpruned)
    out[M.RESUMED_FROM_EPOCH] = 0.0  # every trial runs fresh
    if epoch == epochs - 1:
        out[M.PRUNED_AGREEMENT] = 1.0
        out[M.ENFORCED_SWITCHES_OFF] = float(rng.integers(0, 5))
    return out


def _latency_metrics(arch: _Architecture, final: Mapping[str, float], rng: np.random.Generator,
                     neighbours: int) -> dict[str, float]:
    """Made-up CPU latency of a finished trial (bap.latency's vocabulary): per domain and the slowest domain's."""
    slow = 1.0 + (0.35 * neighbours * rng.uniform(0.5, 1.5) if neighbours else 0.0)
    out: dict[str, float] = {M.LATENCY_THREADS: 1.0, M.LATENCY_NEIGHBOURS: float(neighbours)}
    for batch in M.LATENCY_BATCHES:
        ms_name, ratio_name = M.latency_metric("cpu", batch), M.latency_metric("cpu", batch, M.LATENCY_RATIO)
        per_domain = {}
        for d, (_, ref_m) in arch.domain_reference.items():
            macs = final[M.domain_metric(M.MACS, d)]
            # ~1 ms per 50 M MACs of one image, a fixed overhead per call; batch 64 amortises it.
            unpruned = 0.15 + batch * ref_m * 2e-8 * rng.lognormal(0, 0.03)
            ms = (0.15 + batch * macs * 2e-8 * rng.lognormal(0, 0.05)) * slow
            out[M.domain_metric(ms_name, d)] = ms
            out[M.domain_metric(ratio_name, d)] = ms / unpruned
            per_domain[d] = ms
        slowest = max(per_domain, key=per_domain.__getitem__)
        out[ms_name] = per_domain[slowest]
        out[ratio_name] = out[M.domain_metric(ratio_name, slowest)]
    return out


def _cost_entry(params: float, macs: float, reference: tuple[int, int] | None = None) -> dict[str, float]:
    """A cost as bap.train's metrics.json holds it: params, MACs, FLOPs and, given the reference, the ratios."""
    entry: dict[str, float] = {M.COST_PARAMS: int(params), M.COST_MACS: int(macs), M.COST_FLOPS: 2 * int(macs)}
    if reference is not None:
        entry[M.COST_PARAMS_RATIO] = params / reference[0]
        entry[M.COST_MACS_RATIO] = macs / reference[1]
    return entry


def _metrics_json(arch: _Architecture, final: Mapping[str, float], config: Mapping[str, Any]) -> dict[str, Any]:
    """The shape of bap.train's metrics.json (the keys the analysis reads)."""
    domains = {}
    for d in arch.domain_reference:
        domains[d] = {name: final[M.domain_metric(name, d)] for name in
                      (M.VAL_ACC, M.USAGE, M.SWITCHES_ON, M.PARAMS, M.MACS, M.PARAMS_RATIO, M.MACS_RATIO, M.DUAL)}
    out = {
        M.BUDGET: final[M.BUDGET], M.MEAN_VAL_ACC: final[M.MEAN_VAL_ACC],
        M.SCORE: None if math.isnan(final[M.SCORE]) else final[M.SCORE],
        M.JSON_DOMAINS: domains,
        M.JSON_UNION: _cost_entry(final[M.UNION_PARAMS], final[M.UNION_MACS], arch.union_reference),
        M.JSON_REFERENCE: _cost_entry(*arch.union_reference),
        M.PRUNED_AGREEMENT: 1.0,
        M.JSON_INPUT_SIZE: list(arch.input_size),
        M.JSON_CONFIG: dict(config),
    }
    if M.UNPRUNED_PARAMS in final:
        out[M.JSON_UNPRUNED] = _cost_entry(*arch.unpruned, arch.union_reference)
    return out


def _tune_line(trial_id: str, metrics: Mapping[str, float], config: Mapping[str, Any], iteration: int,
               done: bool) -> str:
    """One result.json line as Ray Tune writes it: the report plus Tune's bookkeeping."""
    row = dict(metrics)
    row.update({
        "timestamp": 1764340000 + iteration, "checkpoint_dir_name": f"checkpoint_{iteration - 1:06d}",
        "done": done, "training_iteration": iteration, "trial_id": trial_id, "date": "2026-11-28_15-00-00",
        "time_this_iter_s": 1.5, "time_total_s": 1.5 * iteration, "pid": 4242, "hostname": "synthetic",
        "node_ip": "127.0.0.1", "config": dict(config), "time_since_restore": 1.5 * iteration,
        "iterations_since_restore": iteration,
    })
    return json.dumps(row)


def _param(key: str, value: str) -> Any:
    from mlflow.entities import Param

    return Param(key, value)


def _metric(key: str, value: float, timestamp: int, step: int) -> Any:
    from mlflow.entities import Metric

    return Metric(key, value, timestamp, step)


@dataclass
class _Trial:
    index: int
    trial_id: str
    budget: float
    sharing: str
    config: dict[str, Any]  # what Tune's params.json holds
    history: list[dict[str, float]]  # one report per epoch
    status: str


@dataclass(frozen=True)
class _MlflowSweep:
    client: Any
    experiment_id: str
    parent_id: str


_STATUS = {"finished": STATUS_FINISHED, "repeat": STATUS_FINISHED, "killed": STATUS_KILLED, "failed": STATUS_FAILED}


def _plan(budgets: Sequence[float], trials_per_budget: int, repeats: int, killed: int,
          failed: int) -> list[tuple[float, str]]:
    """(budget, kind) per trial: finished ones per budget, then repeats, trials stopped early, failures."""
    plan: list[tuple[float, str]] = [(b, "finished") for b in budgets for _ in range(trials_per_budget)]
    plan += [(float(budgets[i % len(budgets)]), "repeat") for i in range(repeats)]
    plan += [(float(budgets[-1 - i % len(budgets)]), "killed") for i in range(killed)]
    plan += [(float(budgets[i % len(budgets)]), "failed") for i in range(failed)]
    return plan


def _trials(plan: Sequence[tuple[float, str]], arch: _Architecture, rng: np.random.Generator, sweep_id: str,
            epochs: int, unpruned_costs: bool, latency: bool = False, contended: int = 0,
            seed: int = 0) -> list[_Trial]:
    """Every trial's configuration and reports; a repeat copies an earlier trial's reports exactly (latency too)."""
    trials: list[_Trial] = []
    latency_rng = np.random.default_rng([seed, 1])  # its own draws: the other values do not change with latency
    timed = 0
    for index, (budget, kind) in enumerate(plan):
        sharing = str(rng.choice(_SHARING))
        config: dict[str, Any] = {M.BUDGET: float(budget), "sharing": sharing}
        if sharing != "none":
            config["sharing_weight"] = float(np.exp(rng.uniform(np.log(0.01), np.log(10))))
        config.update({"lr": float(np.exp(rng.uniform(np.log(0.005), np.log(0.2)))), M.OPTUNA_TRIAL_KEY: index,
                       M.OPTUNA_STUDY_KEY: f"{sweep_id}/budget={budget:g}"})
        if kind == "repeat":
            history = trials[(index * 7) % len(trials)].history
        else:
            last = 1 if kind in ("killed", "failed") else epochs
            history = [_epoch_metrics(arch, budget, sharing, rng, e, epochs, unpruned_costs) for e in range(last)]
            if latency and kind == "finished":
                history[-1].update(_latency_metrics(arch, history[-1], latency_rng, 2 if timed < contended else 0))
                timed += 1
        trials.append(_Trial(index, f"5e1f0_{index:05d}", budget, sharing, config, history, _STATUS[kind]))
    return trials


def _open_mlflow(tracking_uri: str, experiment: str, sweep_id: str, artifact_root: str | Path | None,
                 fixed: Mapping[str, Any]) -> _MlflowSweep:
    """The experiment (created if missing) and the sweep's parent run, with the shared training settings."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        if artifact_root is None and tracking_uri.startswith("sqlite:///"):
            artifact_root = Path(tracking_uri[len("sqlite:///"):]).parent / "mlruns"
        location = (Path(artifact_root) / experiment).resolve().as_uri() if artifact_root is not None else None
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = exp.experiment_id
    parent = client.create_run(experiment_id, run_name=sweep_id, tags={
        M.TAG_SWEEP_ID: sweep_id, M.TAG_ROLE: M.ROLE_SWEEP, M.TAG_PRESET: "synthetic"})
    parent_id = parent.info.run_id
    client.log_batch(parent_id, params=[_param(k, v) for k, v in param_text({"train": fixed}).items()])
    return _MlflowSweep(client, experiment_id, parent_id)


def _write_tune_trial(experiment_dir: Path, trial: _Trial, arch: _Architecture, fixed: Mapping[str, Any]) -> Path:
    """The trial's Tune folder: params.json, result.json, error.txt or train/ outputs. Returns its train/ folder."""
    trial_dir = experiment_dir / (f"run_trial_{trial.trial_id}_{trial.index}_budget={trial.budget:.4f},"
                                  f"sharing={trial.sharing}_2026-11-28")
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "params.json").write_text(json.dumps(trial.config, indent=2))
    n = len(trial.history)
    lines = [_tune_line(trial.trial_id, h, trial.config, i + 1, i + 1 == n and trial.status == STATUS_FINISHED)
             for i, h in enumerate(trial.history)]
    (trial_dir / "result.json").write_text("".join(line + "\n" for line in lines))
    if trial.status == STATUS_FAILED:
        (trial_dir / M.ERROR_FILE).write_text("RuntimeError: synthetic failure after epoch 1\n")
    train_dir = trial_dir / M.TRAIN_DIR
    if trial.status == STATUS_FINISHED:
        (train_dir / M.PRUNED_DIR).mkdir(parents=True, exist_ok=True)
        metrics_json = _metrics_json(arch, trial.history[-1], {**fixed, **trial.config})
        (train_dir / M.METRICS_FILE).write_text(json.dumps(metrics_json))
        (train_dir / M.PRUNED_DIR / M.ARCHITECTURE_FILE).write_text(json.dumps(
            {"format_version": 1, "config": arch.config, "layers": {}}))
    return train_dir


def _log_mlflow_trial(mlflow: _MlflowSweep, trial: _Trial, sweep_id: str, fixed: Mapping[str, Any],
                      train_dir: Path) -> None:
    """One child run, as sweeps/tracking.py logs it: tags, params, per-epoch metrics, artifacts, final status."""
    client = mlflow.client
    tags = {M.TAG_PARENT_RUN: mlflow.parent_id, M.TAG_SWEEP_ID: sweep_id, M.TAG_ROLE: M.ROLE_TRIAL,
            M.TAG_TRIAL_ID: trial.trial_id, M.TAG_BUDGET: f"{trial.budget:g}", M.TAG_SHARING: trial.sharing,
            M.TAG_PRESET: "synthetic"}
    run = client.create_run(mlflow.experiment_id, run_name=f"{trial.trial_id}-b{trial.budget:g}", tags=tags)
    run_id = run.info.run_id
    params = param_text({**fixed, **{k: v for k, v in trial.config.items() if k != M.OPTUNA_STUDY_KEY}})
    client.log_batch(run_id, params=[_param(k, v) for k, v in params.items()])
    stamp = int(time.time() * 1000)
    metrics = [_metric(k, v, stamp, int(h[M.EPOCH])) for h in trial.history for k, v in h.items()]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    if trial.status == STATUS_FINISHED:
        client.log_artifact(run_id, str(train_dir / M.METRICS_FILE))
        client.log_artifact(run_id, str(train_dir / M.PRUNED_DIR / M.ARCHITECTURE_FILE), M.PRUNED_DIR)
    client.set_terminated(run_id, status=trial.status)


def write_synthetic_sweep(
    tracking_uri: str | None,
    storage_path: str | Path,
    *,
    experiment: str = "bap-synthetic",
    sweep_id: str = "synthetic-sweep",
    domains: Mapping[str, int] | None = None,
    budgets: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    trials_per_budget: int = 4,
    repeats: int = 2,
    killed: int = 2,
    failed: int = 1,
    epochs: int = 3,
    width: float = 1.0,
    blocks: int = 4,
    input_px: int = 64,
    seed: int = 0,
    artifact_root: str | Path | None = None,
    unpruned_costs: bool = True,
    latency: bool = False,
    contended: int = 0,
) -> SyntheticSweep:
    """Write one synthetic sweep to MLflow and to a Tune folder (module docstring).

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///...``); the experiment is created if missing. None writes
            the Tune folder only (``parent_run_id`` is then empty).
        storage_path: Tune results root; the sweep goes to ``storage_path / sweep_id``.
        experiment: MLflow experiment name.
        sweep_id: The sweep's id.
        domains: Domain name -> number of classes (default: four Decathlon domains, so a score exists).
        budgets: The budget grid.
        trials_per_budget: Finished trials per budget.
        repeats: Extra finished trials that repeat an earlier trial's metrics exactly (ties).
        killed: Trials stopped early (no final metrics).
        failed: Trials that fail after their first epoch.
        epochs: Epochs per finished trial.
        width: Backbone width of the counted model.
        blocks: Residual blocks per stage.
        input_px: Input size in pixels.
        seed: Random seed.
        artifact_root: Where a new experiment's artifacts go (default: ``mlruns/`` next to a SQLite file).
        unpruned_costs: Log ``unpruned_params`` / ``unpruned_macs`` (False: a sweep as written before they were).
        latency: Finished trials also report measured CPU latency (module docstring).
        contended: With ``latency``, how many finished trials (the first ones) were timed with 2 neighbours.

    Returns:
        Where the sweep was written.
    """
    rng = np.random.default_rng(seed)
    arch = _architecture(domains or DEFAULT_DOMAINS, width, blocks, input_px)
    fixed = {"data": "decathlon", "width": width, "blocks": blocks, "epochs": epochs, "device": "cpu"}
    mlflow = _open_mlflow(tracking_uri, experiment, sweep_id, artifact_root, fixed) if tracking_uri is not None else None
    experiment_dir = Path(storage_path) / sweep_id
    experiment_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(budgets, trials_per_budget, repeats, killed, failed)
    for trial in _trials(plan, arch, rng, sweep_id, epochs, unpruned_costs, latency, contended, seed):
        train_dir = _write_tune_trial(experiment_dir, trial, arch, fixed)
        if mlflow is not None:
            _log_mlflow_trial(mlflow, trial, sweep_id, fixed, train_dir)
    if mlflow is not None:
        mlflow.client.set_terminated(mlflow.parent_id, status="FINISHED")
    return SyntheticSweep(tracking_uri, experiment, str(storage_path), sweep_id,
                          mlflow.parent_id if mlflow is not None else "", len(plan))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for mlruns.db, mlruns/ and ray_results/")
    parser.add_argument("--trials-per-budget", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", action="store_true", help="finished trials report measured CPU latency too")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sweep = write_synthetic_sweep(f"sqlite:///{out / 'mlruns.db'}", out / "ray_results",
                                  trials_per_budget=args.trials_per_budget, seed=args.seed,
                                  latency=args.latency)
    print(f"wrote {sweep.trials} trials of sweep {sweep.sweep_id!r}; report it with:\n"
          f"  python -m analysis.report --tracking-uri {sweep.tracking_uri} --experiment {sweep.experiment} "
          f"--out {out / 'report'}\n"
          f"  python -m analysis.report --tune-dir {sweep.storage_path} --out {out / 'report-tune'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
