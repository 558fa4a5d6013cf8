"""Deployable files of a sweep's pruned models: ``python -m analysis.export`` and :func:`export_trials`.

Usage::

    # one trial (its MLflow child run), every domain, ONNX
    python -m analysis.export --tracking-uri sqlite:///mlruns.db --run-id 3f2a... --out exports/
    # the best finished trial of each budget of the newest sweep of an experiment (or of a given sweep)
    python -m analysis.export --tracking-uri sqlite:///mlruns.db --experiment bap-sweeps --best-per-budget
    python -m analysis.export --experiment bap-sweeps --sweep-id smoke-2026... --best-per-budget \\
        --format torchscript --domains digits signs --no-log

For each chosen trial it downloads the pruned model the sweep logged on the trial's run (``pruned/``:
``architecture.json`` + ``model.pt``, :func:`bap.load_pruned`) and the input size its costs were counted at (the
``input_size`` of its ``metrics.json`` artifact), and writes each domain's plain single-domain network
(:func:`bap.export_domain`) to ``<out>/<run name>/<domain>.onnx`` (or ``.pt`` for TorchScript). The best trial of
a budget is picked as the report's summary picks it (:mod:`analysis.summary`): among the finished trials of the
budget group (:func:`analysis.fronts.budget_groups`), the highest Decathlon score when the sweep has one, else the
highest mean val accuracy.

What is logged back to the trial's MLflow run (``--no-log`` to skip):

* ONNX: one MLflow logged model per domain, named after the domain (``mlflow.onnx.log_model``; the graph
  stored whole, not as external data, with its signature and ``onnx``/``onnxruntime`` as requirements), so the UI
  lists them among the run's models and ``mlflow.onnx.load_model`` / ``mlflow.pyfunc.load_model`` load them;
* TorchScript: the files as plain artifacts under ``exports/`` (:data:`ARTIFACT_PATH`). ``mlflow.pytorch`` would
  not log the exported file but re-serialise the module, and its model expects MLflow to load it; the file is
  meant for ``torch.jit.load`` without bap or MLflow.

Logging to a finished run reopens it (``mlflow.start_run(run_id=...)``); its status and end time are restored
afterwards, so the trial stays FINISHED. Bad input -- an unknown run id, a run without a pruned model (the sweep's
parent run, a trial that did not finish), an unknown domain, an experiment without a sweep -- ends with one line
on stderr and exit code 2 before any file is written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from analysis.errors import AnalysisError
from analysis.fronts import budget_groups
from analysis.load import _client, _first_line, find_sweep, mlflow_records, trial_filter
from analysis.summary import best_trial, ranked_by
from analysis.table import FINISHED, RUN_ID, build_table
from bap import metrics as M

__all__ = ["ARTIFACT_PATH", "DEFAULT_OUT", "ExportedTrial", "SUFFIXES", "add_trial_arguments", "export_trials",
           "keeping_run_status", "main", "select_best"]

ExportFormat = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt"}
ARTIFACT_PATH = "exports"  # where TorchScript files go among a trial run's artifacts
DEFAULT_OUT = Path("exports")


@dataclass
class ExportedTrial:
    """One trial's exported domains.

    Attributes:
        run_id: The trial's MLflow child run.
        run_name: Its name (the run id when it has none).
        budget: The trial's budget (NaN if it logged none).
        input_size: The (C, H, W) the graphs are fixed to (from its ``metrics.json``).
        files: Domain -> the exported file.
        logged_to: The run the files were logged to (None with ``log=False``).
        model_uris: Domain -> the logged model's URI (``models:/<model id>``; ONNX only).
    """

    run_id: str
    run_name: str
    budget: float
    input_size: tuple[int, int, int]
    files: dict[str, Path] = field(default_factory=dict)
    logged_to: str | None = None
    model_uris: dict[str, str] = field(default_factory=dict)


@dataclass
class _Trial:
    """A trial ready to export: its pruned model loaded, the domains checked."""

    run: Any
    model: Any
    input_size: tuple[int, int, int]
    domains: list[str]
    folder: str


# --------------------------------------------------------------------------------------------------------------
# Which trials
# --------------------------------------------------------------------------------------------------------------


def select_best(table: pd.DataFrame) -> list[str]:
    """The run ids of the best finished trial of each budget group, in increasing budget order.

    Ranked as the report's summary ranks them: by the Decathlon score when a finished trial has one, else by the
    mean val accuracy; ties by the mean val accuracy, then by table order.
    """
    if table.empty or FINISHED not in table or M.BUDGET not in table:
        return []
    finished = table[table[FINISHED].fillna(False).astype(bool) & table[M.BUDGET].notna()]
    if finished.empty:
        return []
    rank = ranked_by(finished)
    groups, order = budget_groups(finished[M.BUDGET])
    chosen = []
    for group in order:
        members = finished[groups.to_numpy() == group]
        if not members.empty:
            chosen.append(str(finished.loc[best_trial(members, rank), RUN_ID]))
    return chosen


def _best_run_ids(uri: str, experiment: str, sweep_id: str | None) -> list[str]:
    ref = find_sweep(uri, experiment, sweep_id=sweep_id)
    records = mlflow_records(ref)
    if not records:
        which = f"sweep {sweep_id!r}" if sweep_id else "sweep (no parent run tagged as one, no trial runs)"
        raise AnalysisError(f"no {which} in experiment {ref.experiment_name!r} at {uri} (filter: "
                            f"{trial_filter(ref)}); pass the sweep's --experiment, or --sweep-id of a sweep there.")
    chosen = select_best(build_table(records))
    if not chosen:
        raise AnalysisError(f"{ref.describe()} has {len(records)} trial run(s) but none finished (no "
                            f"{M.PRUNED_AGREEMENT} metric): there is no pruned model to export.")
    return chosen


# --------------------------------------------------------------------------------------------------------------
# Preparing a trial: its run, its pruned model, its input size, the domains
# --------------------------------------------------------------------------------------------------------------


def _get_run(client: Any, uri: str, run_id: str) -> Any:
    try:
        return client.get_run(run_id)
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            raise AnalysisError(f"no MLflow run {run_id!r} at {uri}; pass a trial's child run id "
                                "(the analysis table's run_id column, or the run's page in the MLflow UI).") from None
        raise AnalysisError(f"cannot read MLflow run {run_id!r} at {uri}: {_first_line(exc)}") from None


def _check_pruned(client: Any, run: Any) -> None:
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, M.PRUNED_DIR)}
    if {M.ARCHITECTURE_FILE, M.WEIGHTS_FILE} <= names:
        return
    role = run.data.tags.get(M.TAG_ROLE)
    what = ("it is a sweep's parent run: pass one of its trial runs, or --experiment with --best-per-budget"
            if role == M.ROLE_SWEEP else
            f"its status is {run.info.status}; only a trial that finished logs its pruned model")
    raise AnalysisError(f"MLflow run {run.info.run_id} ({run.info.run_name!r}) has no pruned model (artifacts "
                        f"{M.PRUNED_DIR}/{M.ARCHITECTURE_FILE} and {M.PRUNED_DIR}/{M.WEIGHTS_FILE}): {what}.")


def _input_size(uri: str, run_id: str, folder: Path) -> tuple[int, int, int]:
    import mlflow.artifacts

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=M.METRICS_FILE,
                                                   dst_path=str(folder), tracking_uri=uri)
        size = json.loads(Path(path).read_text())[M.JSON_INPUT_SIZE]
        channels, height, width = (int(v) for v in size)
    except Exception as exc:
        raise AnalysisError(f"MLflow run {run_id} has no usable {M.METRICS_FILE} artifact (its "
                            f"{M.JSON_INPUT_SIZE!r}, the input size to export at): {_first_line(exc)}") from None
    return channels, height, width


def _chosen_domains(model: Any, domains: Sequence[str] | None, run_id: str) -> list[str]:
    known = list(model.domains)
    if not domains:
        return known
    unknown = [d for d in domains if d not in known]
    if unknown:
        raise AnalysisError(f"unknown domain(s) {', '.join(map(repr, unknown))} for the model of run {run_id}; "
                            f"allowed: {', '.join(known)}.")
    return list(dict.fromkeys(domains))


def _folder_name(run: Any, taken: set[str]) -> str:
    """A file-system-safe folder name from the run's name (its id when it has none), unique among ``taken``."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in (run.info.run_name or "")).strip("._")
    name = name or run.info.run_id
    if name in taken:
        name = f"{name}_{run.info.run_id[:8]}"
    taken.add(name)
    return name


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No MLflow progress bars on stderr (the CLI's errors stay one line)."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _prepare(client: Any, uri: str, run_ids: Sequence[str], domains: Sequence[str] | None,
             scratch: Path) -> list[_Trial]:
    """Every trial checked and loaded before anything is written (the early errors)."""
    with _quiet_downloads():
        return _prepare_quietly(client, uri, run_ids, domains, scratch)


def _prepare_quietly(client: Any, uri: str, run_ids: Sequence[str], domains: Sequence[str] | None,
                     scratch: Path) -> list[_Trial]:
    import mlflow.artifacts

    from bap import load_pruned

    runs = [_get_run(client, uri, run_id) for run_id in dict.fromkeys(run_ids)]
    for run in runs:
        _check_pruned(client, run)
    trials, taken = [], set()
    for run in runs:
        run_id = run.info.run_id
        folder = scratch / run_id
        pruned = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=M.PRUNED_DIR,
                                                     dst_path=str(folder), tracking_uri=uri)
        model = load_pruned(pruned).eval()
        trials.append(_Trial(run, model, _input_size(uri, run_id, folder),
                             _chosen_domains(model, domains, run_id), _folder_name(run, taken)))
    return trials


# --------------------------------------------------------------------------------------------------------------
# Writing and logging
# --------------------------------------------------------------------------------------------------------------


def _write(trial: _Trial, out: Path, format: ExportFormat) -> dict[str, Path]:
    from bap import export_domain

    return {domain: export_domain(trial.model, domain, out / trial.folder / f"{domain}{SUFFIXES[format]}",
                                  format=format, input_size=trial.input_size)
            for domain in trial.domains}


def _log_onnx(trial: _Trial, files: dict[str, Path]) -> dict[str, str]:
    """Each ONNX file as a logged model of the active run, named after its domain: domain -> its model URI."""
    import mlflow.onnx
    import numpy as np
    import onnx
    import onnxruntime
    import torch
    from mlflow.models import infer_signature

    from bap.export import single_domain_module

    requirements = [f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"]
    example = torch.zeros((1, *trial.input_size))
    uris = {}
    for domain, path in files.items():
        with torch.no_grad():
            logits = single_domain_module(trial.model, domain)(example).numpy()
        signature = infer_signature(example.numpy().astype(np.float32), logits.astype(np.float32))
        info = mlflow.onnx.log_model(onnx.load(str(path)), name=domain, signature=signature,
                                     pip_requirements=requirements, save_as_external_data=False)
        uris[domain] = info.model_uri
    return uris


@contextlib.contextmanager
def keeping_run_status(client: Any, run: Any) -> Iterator[None]:
    """Log to an ended run (reopening it, if need be) and leave it as it was: its status and end time are put back
    afterwards, so a FINISHED trial stays FINISHED with its own end time."""
    status, end_time = run.info.status, run.info.end_time
    try:
        yield
    finally:
        if status in ("FINISHED", "FAILED", "KILLED"):
            client.set_terminated(run.info.run_id, status=status, end_time=end_time)


def _log(uri: str, trial: _Trial, files: dict[str, Path], format: ExportFormat) -> dict[str, str]:
    """Log the files on the trial's run (see the module docstring); the run's status and end time are kept."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with keeping_run_status(_client(uri), trial.run), _quiet_downloads(), \
                mlflow.start_run(run_id=trial.run.info.run_id):
            if format == "onnx":
                return _log_onnx(trial, files)
            for path in files.values():
                mlflow.log_artifact(str(path), ARTIFACT_PATH)
            return {}
    finally:
        mlflow.set_tracking_uri(previous)


def export_trials(
    out: str | Path = DEFAULT_OUT,
    *,
    tracking_uri: str | None = None,
    run_ids: Sequence[str] | None = None,
    experiment: str | None = None,
    sweep_id: str | None = None,
    format: ExportFormat = "onnx",
    domains: Sequence[str] | None = None,
    log_to_mlflow: bool = True,
) -> list[ExportedTrial]:
    """Export the pruned models of some trials of a sweep, one file per domain, and log them back to MLflow.

    Args:
        out: Local folder; each trial's files go to ``<out>/<run name>/<domain>.onnx`` (``.pt``).
        tracking_uri: MLflow tracking URI (default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db``).
        run_ids: The trials' child runs. Without them, the best finished trial of each budget (:func:`select_best`)
            of the newest sweep of ``experiment``, or of the sweep ``sweep_id``.
        experiment: Experiment name or id (with no ``run_ids``).
        sweep_id: The sweep's ``bap.sweep_id`` tag (default: the experiment's newest sweep).
        format: ``"onnx"`` or ``"torchscript"``.
        domains: The domains to export (default: all of each model's).
        log_to_mlflow: Log the files to each trial's run (ONNX: logged models; TorchScript: artifacts).

    Returns:
        One :class:`ExportedTrial` per trial, in the order chosen.

    Raises:
        AnalysisError: Unknown run, experiment or sweep; a run without a pruned model; an unknown domain; an
            unknown format; logging failed (the message says which). Nothing is written for the first five.
    """
    if format not in FORMATS:
        raise AnalysisError(f"unknown format {format!r}; allowed: {', '.join(FORMATS)}.")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or M.DEFAULT_TRACKING_URI
    if not run_ids:
        if not experiment:
            raise AnalysisError("say which trials to export: --run-id, or --experiment with --best-per-budget.")
        run_ids = _best_run_ids(uri, experiment, sweep_id)
    client = _client(uri)
    with tempfile.TemporaryDirectory(prefix="bap-export-") as scratch:
        trials = _prepare(client, uri, run_ids, domains, Path(scratch))
        return [_export_one(uri, trial, Path(out), format, log_to_mlflow) for trial in trials]


def _export_one(uri: str, trial: _Trial, out: Path, format: ExportFormat, log_to_mlflow: bool) -> ExportedTrial:
    run = trial.run
    budget = run.data.metrics.get(M.BUDGET, run.data.params.get(M.BUDGET))
    result = ExportedTrial(run.info.run_id, run.info.run_name or run.info.run_id,
                           float(budget) if budget is not None else math.nan, trial.input_size)
    result.files = _write(trial, out, format)
    if log_to_mlflow:
        try:
            result.model_uris = _log(uri, trial, result.files, format)
        except Exception as exc:
            raise AnalysisError(f"the files were written to {out / trial.folder} but could not be logged to MLflow "
                                f"run {run.info.run_id}: {_first_line(exc)}. Rerun with --no-log to skip logging.") \
                from None
        result.logged_to = run.info.run_id
    return result


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def add_trial_arguments(parser: argparse.ArgumentParser, *, experiment_help: str) -> Any:
    """The "which trials" flags of the commands that act on a sweep's trial runs (this one, ``analysis.retime``):
    ``--tracking-uri``, ``--run-id`` (repeatable, into ``run_ids``), ``--experiment``, ``--sweep-id``; returns the
    argument group, for a command's own selection flags."""
    g = parser.add_argument_group("which trials")
    g.add_argument("--tracking-uri",
                   help=f"MLflow tracking URI (default $MLFLOW_TRACKING_URI or {M.DEFAULT_TRACKING_URI})")
    g.add_argument("--run-id", action="append", dest="run_ids", metavar="RUN",
                   help="a trial's MLflow child run id (repeat for several)")
    g.add_argument("--experiment", help=experiment_help)
    g.add_argument("--sweep-id", help="the sweep id (bap.sweep_id tag; default: the experiment's newest sweep)")
    return g


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis.export",
        description="Export the pruned models of a sweep's trials, one ONNX or TorchScript file per domain, and log "
        "them to the trials' MLflow runs.",
    )
    g = add_trial_arguments(p, experiment_help="MLflow experiment name or id (with --best-per-budget)")
    g.add_argument("--best-per-budget", action="store_true",
                   help="the best finished trial of each budget (by score, else mean val accuracy)")
    g = p.add_argument_group("output")
    g.add_argument("--format", choices=FORMATS, default="onnx", help="file format (default onnx)")
    g.add_argument("--domains", nargs="+", metavar="DOMAIN", help="domains to export (default: all of the model's)")
    g.add_argument("--out", default=str(DEFAULT_OUT), help=f"local folder (default {DEFAULT_OUT}/)")
    g.add_argument("--no-log", action="store_true", help="do not log the files to the trials' MLflow runs")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.run_ids and (args.experiment or args.sweep_id or args.best_per_budget):
        raise AnalysisError("give either --run-id or --experiment (with --best-per-budget), not both.")
    if not args.run_ids and not (args.experiment and args.best_per_budget):
        if args.experiment:
            raise AnalysisError("--experiment needs --best-per-budget (or pass trials with --run-id).")
        raise AnalysisError("say which trials to export: --run-id RUN, or --experiment NAME --best-per-budget.")


def _describe(trial: ExportedTrial, format: str) -> str:
    budget = "?" if math.isnan(trial.budget) else f"{trial.budget:g}"
    files = ", ".join(str(p) for p in trial.files.values())
    if trial.logged_to is None:
        where = "not logged (--no-log)"
    elif format == "onnx":
        where = f"logged as models {', '.join(trial.files)} of run {trial.logged_to}"
    else:
        where = f"logged as artifacts '{ARTIFACT_PATH}/' of run {trial.logged_to}"
    return (f"[export] {trial.run_name} (run {trial.run_id}) budget {budget}: {', '.join(trial.files)} -> "
            f"{files}; {where}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    domains = [d for item in args.domains or [] for d in item.split(",") if d]
    try:
        _check_args(args)
        exported = export_trials(
            args.out, tracking_uri=args.tracking_uri, run_ids=args.run_ids, experiment=args.experiment,
            sweep_id=args.sweep_id, format=args.format, domains=domains or None, log_to_mlflow=not args.no_log,
        )
    except AnalysisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for trial in exported:
        print(_describe(trial, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
