"""Re-measure the CPU latency of a sweep's trials alone: ``python -m analysis.retime`` and :func:`retime_trials`.

Usage::

    # the trials on the report's fronts (mean accuracy vs params, MACs and latency) of the newest sweep
    python -m analysis.retime --tracking-uri sqlite:///mlruns.db --experiment bap-sweeps
    python -m analysis.retime --experiment bap-sweeps --sweep-id smoke-2026... --min-time-s 1 --threads 4
    # given trials (their MLflow child runs), without logging
    python -m analysis.retime --tracking-uri sqlite:///mlruns.db --run-id 3f2a... --run-id 9c1b... --no-log

A trial times its pruned network at the end of training, often while other trials of the sweep still train on the
same machine (``latency_neighbours > 0``): such times are noisy. Run this on an idle machine
afterwards: for each chosen trial it downloads the pruned model the sweep logged (``pruned/``) and the input size
of its ``metrics.json`` (the helpers of :mod:`analysis.export`), times every domain's deployable network next to its
unpruned twin with :func:`bap.latency.measure_latency` (CPU), prints a table (trial, ms before -> after, neighbours
before -> after), and logs the new values to the trial's MLflow run (``--no-log`` to skip): every latency metric
as a new value at the step of its last one (so it becomes the latest value, the one the analysis reads), and the
tag ``bap.latency_retimed`` (the time, UTC). The run's status and end time are kept (FINISHED stays FINISHED). The
``metrics.json`` artifact keeps the original timing.

Default trials: the ``mean`` target's non-dominated finished trials across budgets, on any of the report's fronts
(:func:`select_front`: accuracy vs params, vs MACs, vs both and, when the sweep has latency, vs batch-1 and
batch-64 ms). If the machine is not idle while it times (other training runs live, :mod:`bap.neighbours`), a
warning goes to stderr and the logged ``latency_neighbours`` says so. Bad input -- an unknown run, a run without a
pruned model, an experiment without a sweep, a non-positive ``--min-time-s`` or ``--threads`` -- ends with one line
on stderr and exit code 2 before anything is timed or logged.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.errors import AnalysisError
from analysis.export import _prepare, _Trial, add_trial_arguments, keeping_run_status
from analysis.fronts import TARGET_MEAN, TRIAL, pareto_data
from analysis.load import _client, _first_line, find_sweep, mlflow_records, trial_filter
from analysis.table import RUN_ID, build_table
from analysis.units import format_ms
from bap import metrics as M

__all__ = ["DEVICE", "RetimedTrial", "main", "retime_trials", "select_front"]

DEVICE = "cpu"
DEFAULT_MIN_TIME_S = 0.2  # bap.latency's default, read here without importing torch for --help


@dataclass
class RetimedTrial:
    """One trial's latency, before and after re-timing.

    Attributes:
        run_id: The trial's MLflow child run.
        run_name: Its name (the run id when it has none).
        before: The latency metrics the run had (NaN where it had none).
        after: What :func:`bap.latency.measure_latency` measured now (flat and per domain, threads, neighbours).
        logged_to: The run the new values were logged to (None with ``log_to_mlflow=False``).
    """

    run_id: str
    run_name: str
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    logged_to: str | None = None


# --------------------------------------------------------------------------------------------------------------
# Which trials
# --------------------------------------------------------------------------------------------------------------


def select_front(table: pd.DataFrame) -> list[str]:
    """The run ids of the ``mean`` target's finished trials on any across-budget front of the report (accuracy vs
    params, MACs, both, and the latency fronts when the table has latency), cheapest union params first."""
    if table.empty or RUN_ID not in table:
        return []
    try:
        data = pareto_data(table)
    except (KeyError, ValueError):
        return []
    points = data.points_of(TARGET_MEAN)
    on = points[[f"front_{name}" for name in data.objectives]].any(axis=1).to_numpy()
    rows = table.iloc[points[TRIAL].to_numpy()[on]]
    rows = rows.sort_values([M.UNION_PARAMS_RATIO, M.UNION_MACS_RATIO], kind="stable")
    return [str(r) for r in rows[RUN_ID] if isinstance(r, str) and r]


def _front_run_ids(uri: str, experiment: str, sweep_id: str | None, parent_run_id: str | None) -> list[str]:
    ref = find_sweep(uri, experiment, parent_run_id, sweep_id)
    records = mlflow_records(ref)
    if not records:
        raise AnalysisError(f"no trial runs for {ref.describe()} (filter: {trial_filter(ref)}); pass the sweep's "
                            "--experiment, or --sweep-id of a sweep there.")
    chosen = select_front(build_table(records))
    if not chosen:
        raise AnalysisError(f"{ref.describe()} has {len(records)} trial run(s) but none finished with the metrics "
                            f"the fronts need: there is no pruned model on a front to re-time.")
    return chosen


def _check(min_time_s: float, threads: int | None) -> None:
    if not (isinstance(min_time_s, int | float) and math.isfinite(min_time_s) and min_time_s > 0):
        raise AnalysisError(f"--min-time-s must be a positive number of seconds, not {min_time_s!r} "
                            f"(default {DEFAULT_MIN_TIME_S}).")
    if threads is not None and threads < 1:
        raise AnalysisError(f"--threads must be at least 1, not {threads} (default: the threads each trial timed with).")


# --------------------------------------------------------------------------------------------------------------
# Timing and logging
# --------------------------------------------------------------------------------------------------------------


def _time(trial: _Trial, min_time_s: float, threads: int | None) -> dict[str, float]:
    from bap.latency import CHANNEL_MULTIPLE, measure_latency

    recorded = trial.run.data.metrics.get(M.LATENCY_CHANNEL_MULTIPLE)  # timed as the trial timed it
    multiple = int(recorded) if recorded is not None and math.isfinite(recorded) and recorded >= 1 else CHANNEL_MULTIPLE
    return measure_latency(trial.model, trial.input_size, device=DEVICE, min_time_s=min_time_s, threads=threads,
                           channel_multiple=multiple)


def _log(client: Any, run: Any, values: Mapping[str, float]) -> None:
    """Each value at the step of its metric's last value (so that it is the latest), then the tag; the run's
    status and end time as they were."""
    from mlflow.entities import Metric

    run_id = run.info.run_id
    stamp = int(time.time() * 1000)
    metrics = []
    for key, value in values.items():
        history = client.get_metric_history(run_id, key)
        step = max((m.step for m in history), default=0)
        metrics.append(Metric(key, float(value), stamp, step))
    with keeping_run_status(client, run):
        client.log_batch(run_id, metrics=metrics)
        client.set_tag(run_id, M.TAG_LATENCY_RETIMED, datetime.now(UTC).isoformat(timespec="seconds"))


def retime_trials(
    *,
    tracking_uri: str | None = None,
    run_ids: Sequence[str] | None = None,
    experiment: str | None = None,
    sweep_id: str | None = None,
    parent_run_id: str | None = None,
    min_time_s: float = DEFAULT_MIN_TIME_S,
    threads: int | None = None,
    log_to_mlflow: bool = True,
) -> list[RetimedTrial]:
    """Re-measure the CPU latency of some trials of a sweep and log it to their MLflow runs (module docstring).

    Args:
        tracking_uri: MLflow tracking URI (default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db``).
        run_ids: The trials' child runs. Without them, the trials on the report's fronts (:func:`select_front`) of
            the newest sweep of ``experiment``, of the sweep ``sweep_id`` or of the parent run ``parent_run_id``.
        experiment: Experiment name or id (with no ``run_ids``).
        sweep_id: The sweep's ``bap.sweep_id`` tag (default: the experiment's newest sweep).
        parent_run_id: The sweep's parent run (instead of ``experiment``/``sweep_id``).
        min_time_s: Seconds each measurement runs at least.
        threads: Torch threads for the timing (default: each trial's own, its ``latency_threads``; torch's where
            it has none).
        log_to_mlflow: Log the new values and the tag to each trial's run.

    Returns:
        One :class:`RetimedTrial` per trial, in the order chosen.

    Raises:
        AnalysisError: Bad ``min_time_s``/``threads``, unknown run, experiment or sweep, a run without a pruned
            model (nothing is timed or logged then); or logging failed (the message says which run).
    """
    _check(min_time_s, threads)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or M.DEFAULT_TRACKING_URI
    if not run_ids:
        if not (experiment or parent_run_id):
            raise AnalysisError("say which trials to re-time: --run-id, or --experiment (optionally --sweep-id).")
        run_ids = _front_run_ids(uri, experiment or "", sweep_id, parent_run_id)
    client = _client(uri)
    with tempfile.TemporaryDirectory(prefix="bap-retime-") as scratch:
        trials = _prepare(client, uri, run_ids, None, Path(scratch))
        return [_retime_one(client, trial, min_time_s, threads, log_to_mlflow) for trial in trials]


def _retime_one(client: Any, trial: _Trial, min_time_s: float, threads: int | None,
                log_to_mlflow: bool) -> RetimedTrial:
    run = trial.run
    recorded = run.data.metrics.get(M.LATENCY_THREADS)
    if threads is None and recorded is not None and math.isfinite(recorded) and recorded >= 1:
        threads = int(recorded)  # as the trial timed it: the comparison is then load against no load
    after = _time(trial, min_time_s, threads)
    before = {key: float(run.data.metrics.get(key, math.nan)) for key in after}
    result = RetimedTrial(run.info.run_id, run.info.run_name or run.info.run_id, before, after)
    neighbours = after.get(M.LATENCY_NEIGHBOURS, 0.0)
    if neighbours > 0:
        print(f"warning: {neighbours:.0f} other training run(s) were live on this machine while run "
              f"{run.info.run_id} was re-timed: the times are noisy; re-time on an idle machine.", file=sys.stderr)
    if log_to_mlflow:
        try:
            _log(client, run, after)
        except Exception as exc:
            raise AnalysisError(f"run {run.info.run_id} was re-timed but its latency could not be logged to "
                                f"MLflow: {_first_line(exc)}. Rerun with --no-log to only print it.") from None
        result.logged_to = run.info.run_id
    return result


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis.retime",
        description="Re-measure, alone on this machine, the CPU latency of a sweep's pruned models (default: the "
        "trials on the report's fronts) and log it to the trials' MLflow runs.",
    )
    g = add_trial_arguments(
        p, experiment_help="MLflow experiment name or id (alone: the trials on its newest sweep's fronts)")
    g.add_argument("--parent-run-id", help="the sweep's MLflow parent run id (instead of --experiment/--sweep-id)")
    g = p.add_argument_group("timing")
    g.add_argument("--min-time-s", type=float, default=DEFAULT_MIN_TIME_S,
                   help=f"seconds each measurement runs at least (default {DEFAULT_MIN_TIME_S})")
    g.add_argument("--threads", type=int, help="torch threads for the timing (default: the threads each trial timed "
                   "with, its latency_threads)")
    g.add_argument("--no-log", action="store_true", help="print the new times, do not log them to MLflow")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.run_ids and (args.experiment or args.sweep_id or args.parent_run_id):
        raise AnalysisError("give either --run-id or --experiment (with --sweep-id) / --parent-run-id, not both.")
    if not args.run_ids and not (args.experiment or args.parent_run_id):
        if args.sweep_id:
            raise AnalysisError("--sweep-id needs --experiment (the MLflow experiment the sweep logged to).")
        raise AnalysisError("say which trials to re-time: --run-id RUN, or --experiment NAME (optionally "
                            "--sweep-id), or --parent-run-id RUN.")
    _check(args.min_time_s, args.threads)


def _value(values: Mapping[str, float], key: str, ms: bool = True) -> str:
    value = values.get(key, math.nan)
    if not math.isfinite(value):
        return "-"
    return format_ms(value) if ms else f"{value:.0f}"


def _table(trials: Sequence[RetimedTrial]) -> str:
    """The printed table: trial, ms before -> after (batch 1, batch 64), neighbours before -> after."""
    header = ["trial", "run", "batch 1", "batch 64", "neighbours", "logged"]
    rows = [header]
    for t in trials:
        cells = [t.run_name, t.run_id]
        for batch in M.LATENCY_BATCHES:
            key = M.latency_metric(DEVICE, batch)
            cells.append(f"{_value(t.before, key)} -> {_value(t.after, key)}")
        cells.append(f"{_value(t.before, M.LATENCY_NEIGHBOURS, False)} -> "
                     f"{_value(t.after, M.LATENCY_NEIGHBOURS, False)}")
        cells.append("yes" if t.logged_to else "no (--no-log)")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        _check_args(args)
        trials = retime_trials(
            tracking_uri=args.tracking_uri, run_ids=args.run_ids, experiment=args.experiment,
            sweep_id=args.sweep_id, parent_run_id=args.parent_run_id, min_time_s=args.min_time_s,
            threads=args.threads, log_to_mlflow=not args.no_log,
        )
    except AnalysisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[retime] {len(trials)} trial(s), CPU latency per call of a whole batch (before -> after):")
    print(_table(trials))
    return 0


if __name__ == "__main__":
    sys.exit(main())
