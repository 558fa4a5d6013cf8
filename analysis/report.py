"""The Pareto report of a sweep: ``python -m analysis.report`` and :func:`build_report` (also used by the notebook).

Usage::

    # from MLflow: the newest sweep of an experiment, or a given sweep id / parent run id
    python -m analysis.report --tracking-uri sqlite:///mlruns.db --experiment bap-sweeps --out reports/NAME
    python -m analysis.report --tracking-uri http://mlflow:5000 --parent-run-id 3f2a... --out reports/NAME
    python -m analysis.report --tracking-uri sqlite:///mlruns.db --experiment bap-sweeps --sweep-id smoke-2026... \\
        --out reports/NAME
    # from a Ray Tune results folder (the experiment folder or the storage root), or from a saved table
    python -m analysis.report --tune-dir ray_results/smoke-2026... --out reports/NAME
    python -m analysis.report --tune-dir s3://bucket/sweeps/smoke-2026... --out reports/NAME   # an object store
    python -m analysis.report --table reports/NAME/trials.parquet --out reports/NAME-again

What it writes to ``--out``:

* ``trials.parquet`` -- the trial table (:mod:`analysis.table`), so later analyses need no tracking server;
* ``fronts.parquet`` and ``hypervolumes.parquet`` -- the data behind the figures (:mod:`analysis.fronts`);
* ``png/<target>.png`` -- per domain, ``mean`` and ``score``: accuracy vs params and vs MACs (:mod:`analysis.plots`),
  and when the trials report measured CPU latency, vs batch-1 and batch-64 milliseconds too;
* ``pareto.html`` -- the same figures, interactive (one page, a drop-down per target);
* ``summary.md`` and ``summary.html`` -- per budget the best trial, its params/MACs/FLOPs and ratios and the
  hypervolumes; the Pareto set; fronts and hypervolumes per target; with latency, the trials on the
  accuracy-vs-ms fronts and a note on times measured while other runs shared the machine, with the
  ``python -m analysis.retime`` command that re-measures them alone; units (:mod:`analysis.summary`). The HTML page
  carries its figures inline, so it shows them without the ``png/`` folder next to it.

Both HTML pages are self-contained: plotly.js is embedded in ``pareto.html``, and neither loads anything from the
network (``tests/browser`` checks that in Chromium).

When the trials come from MLflow, the whole folder is logged as artifacts under ``report/`` on the sweep's parent
run (``--no-log`` to skip). Bad input -- no runs, runs without the needed metrics, an empty front -- ends with one
line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from shlex import quote

import pandas as pd

from analysis.errors import AnalysisError
from analysis.fronts import TARGET_MEAN, ParetoData, pareto_data, targets_of
from analysis.load import (
    SweepRef,
    build_table,
    find_sweep,
    find_tune_experiments,
    mlflow_records,
    newest_tune_experiment,
    trial_filter,
    tune_experiment_name,
    tune_records,
)
from analysis.plots import figure_data, render_html, render_png
from analysis.summary import RETIME_COMMAND, SummaryData, render_markdown, summary_data
from analysis.summary import render_html as summary_html
from analysis.table import read_parquet, to_parquet
from analysis.unpruned import ModelCosts, model_costs
from bap import metrics as M

__all__ = ["ARTIFACT_PATH", "Report", "build_report", "check_metrics", "main"]

ARTIFACT_PATH = "report"  # where the report goes among the parent run's artifacts
TABLE_FILE = "trials.parquet"
FRONTS_FILE = "fronts.parquet"
HYPERVOLUMES_FILE = "hypervolumes.parquet"
PNG_DIR = "png"
HTML_FILE = "pareto.html"
SUMMARY_MD = "summary.md"
SUMMARY_HTML = "summary.html"
DEFAULT_TRACKING_URI = M.DEFAULT_TRACKING_URI  # the sweeps' default (the old name, kept for callers)

# What the fronts need: the union costs for mean/score, and per domain its accuracy and costs.
REQUIRED_FLAT = (M.MEAN_VAL_ACC, M.UNION_PARAMS, M.UNION_MACS, M.UNION_PARAMS_RATIO, M.UNION_MACS_RATIO)
REQUIRED_PER_DOMAIN = (M.VAL_ACC, M.PARAMS, M.MACS, M.PARAMS_RATIO, M.MACS_RATIO)


@dataclass
class Report:
    """What :func:`build_report` produced.

    Attributes:
        out_dir: The report folder.
        table: The trial table.
        data: Fronts and hypervolumes.
        summary: The summary's data.
        files: Written files by role (``table``, ``fronts``, ``hypervolumes``, ``html``, ``summary_md``,
            ``summary_html``, ``png:<target>``).
        logged_to: The MLflow run the report was logged to (None if not logged).
        notes: What the report wants the reader to know (sweep chosen, trials left out, ...).
    """

    out_dir: Path
    table: pd.DataFrame
    data: ParetoData
    summary: SummaryData
    files: dict[str, Path] = field(default_factory=dict)
    logged_to: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pngs(self) -> dict[str, Path]:
        """Target -> PNG file."""
        return {k.split(":", 1)[1]: v for k, v in self.files.items() if k.startswith("png:")}


@dataclass
class _Loaded:
    table: pd.DataFrame
    source: str
    described: str  # for "no runs found" messages
    ref: SweepRef | None = None
    notes: list[str] = field(default_factory=list)


def _load(tracking_uri: str | None, experiment: str | None, parent_run_id: str | None, sweep_id: str | None,
          tune_dir: str | Path | None, table_path: str | Path | None) -> _Loaded:
    sources = [s for s in (tune_dir, table_path) if s is not None]
    mlflow_given = any(v for v in (tracking_uri, experiment, parent_run_id))
    if len(sources) + mlflow_given > 1:
        raise AnalysisError("give one source: MLflow (--tracking-uri with --experiment/--parent-run-id/--sweep-id), "
                            "a Tune folder (--tune-dir) or a saved table (--table).")
    if table_path is not None:
        path = Path(table_path)
        if not path.is_file():
            raise AnalysisError(f"no trial table at {str(path)!r}; pass a trials.parquet written by a report.")
        return _Loaded(read_parquet(path), f"Trial table {path}.", f"in {path}")
    if tune_dir is not None:
        experiment_dir, count = newest_tune_experiment(tune_dir, sweep_id)
        if experiment_dir is None:
            known = [tune_experiment_name(p) for p in find_tune_experiments(tune_dir)]
            which = f" named {sweep_id!r}" if sweep_id else ""
            raise AnalysisError(f"no runs found: no Ray Tune experiment{which} with trial folders (params.json / "
                                f"result.json) under {str(tune_dir)!r}" + (f"; sweeps there: {known}" if known else "")
                                + ". Pass the sweep's --storage-path or its experiment folder.")
        notes = []
        if count > 1:
            notes.append(f"{tune_dir} holds {count} sweeps; this report is on the newest, "
                         f"{tune_experiment_name(experiment_dir)!r} (choose another with --sweep-id).")
        return _Loaded(build_table(tune_records(experiment_dir)), f"Ray Tune experiment {experiment_dir}.",
                       f"in the Tune experiment {experiment_dir}", notes=notes)
    if not (experiment or parent_run_id or sweep_id):
        raise AnalysisError("say which sweep to report: --tracking-uri with --experiment (and optionally --sweep-id) "
                            "or --parent-run-id; or --tune-dir; or --table.")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if sweep_id and not (experiment or parent_run_id):
        raise AnalysisError("--sweep-id needs --experiment (the MLflow experiment the sweep logged to).")
    ref = find_sweep(uri, experiment, parent_run_id, sweep_id)
    notes = []
    if ref.sweeps_in_experiment > 1 and not (sweep_id or parent_run_id):
        notes.append(f"experiment {ref.experiment_name!r} holds {ref.sweeps_in_experiment} sweeps; this report is "
                     f"on the newest, {ref.sweep_id!r} (choose another with --sweep-id or --parent-run-id).")
    source = (f"MLflow {uri}: experiment {ref.experiment_name!r}, sweep {ref.sweep_id!r}, "
              f"parent run {ref.parent_run_id}.")
    described = f"for {ref.describe()} (filter: {trial_filter(ref)})"
    return _Loaded(build_table(mlflow_records(ref)), source, described, ref=ref, notes=notes)


def check_metrics(table: pd.DataFrame, described: str = "") -> list[str]:
    """Raise unless some trial has every metric the fronts need; return notes on trials that lack some.

    Args:
        table: The trial table.
        described: Where the trials came from, for messages.

    Returns:
        Notes (one per metric some trials lack), empty if every trial has everything.

    Raises:
        AnalysisError: No trial at all, or no domain metrics, or no trial with the union metrics.
    """
    if table.empty:
        raise AnalysisError(f"no runs found {described}".rstrip() + ". Check the experiment/sweep id, or that the "
                            "sweep logged its trials (sweeps/decathlon.py).")
    domains = [t.name for t in targets_of(table) if not t.union]
    missing_flat = [m for m in REQUIRED_FLAT if m not in table or table[m].isna().all()]
    if not domains or missing_flat:
        needed = list(missing_flat) + ([M.domain_metric(m, "<domain>") for m in REQUIRED_PER_DOMAIN] if not domains
                                       else [])
        raise AnalysisError(f"{len(table)} run(s) found {described} but none has the metrics the fronts need: "
                            f"{', '.join(needed)}. Were they logged by sweeps/decathlon.py (bap.metrics names), "
                            "and did any trial finish an epoch?")
    notes = []
    needed = list(REQUIRED_FLAT) + [M.domain_metric(m, d) for d in domains for m in REQUIRED_PER_DOMAIN]
    lacking = {m: int(table[m].isna().sum()) if m in table else len(table) for m in needed}
    for metric, count in lacking.items():
        if count:
            notes.append(f"{count} of {len(table)} trials lack {metric}; they are left out of the fronts using it.")
    return notes


def _front_notes(data: ParetoData, table: pd.DataFrame, described: str, include_unfinished: bool) -> list[str]:
    """Raise if the mean-accuracy front is empty (saying why); else notes on the trials it leaves out."""
    if data.points_of(TARGET_MEAN).empty:
        unfinished = data.left_out.get(TARGET_MEAN, {}).get("unfinished", 0)
        if unfinished:
            raise AnalysisError(f"the Pareto front is empty: none of the {len(table)} trials {described} "
                                f"finished ({unfinished} stopped early or still running). Rerun with "
                                "--include-unfinished to plot their latest metrics.")
        raise AnalysisError(f"the Pareto front is empty: no trial {described} has finite "
                            f"{M.MEAN_VAL_ACC}, {M.UNION_PARAMS_RATIO} and {M.UNION_MACS_RATIO}.")
    notes = []
    for target, left in data.left_out.items():
        if left.get("unfinished") and target == TARGET_MEAN:
            notes.append(f"{left['unfinished']} trial(s) stopped early or unfinished are left out (no enforced "
                         "budget, no pruned model); --include-unfinished plots them.")
    if include_unfinished:
        notes.append("trials stopped early are included with their latest metrics (not budget-enforced).")
    return notes


def _write_data(out: Path, table: pd.DataFrame, data: ParetoData) -> dict[str, Path]:
    """The trial table and the data behind the figures, as Parquet."""
    return {
        "table": to_parquet(table, out / TABLE_FILE),
        "fronts": to_parquet(data.points, out / FRONTS_FILE),
        "hypervolumes": to_parquet(data.hypervolumes, out / HYPERVOLUMES_FILE),
    }


def _write_figures(out: Path, data: ParetoData, table: pd.DataFrame, model: ModelCosts | None,
                   title: str | None) -> dict[str, Path]:
    """One PNG per target and the interactive page; returns the files by role (``png:<target>``, ``html``)."""
    (out / PNG_DIR).mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    figures = []
    for t in data.targets:
        fig = figure_data(data, t.name, table=table, model=model)
        figures.append(fig)
        files[f"png:{t.name}"] = render_png(fig, out / PNG_DIR / f"{_safe(t.name)}.png")
    files["html"] = render_html(figures, out / HTML_FILE, title=title or "Pareto fronts")
    return files


def _data_uri(png: Path) -> str:
    """A PNG file as a ``data:`` URI, to inline it in an HTML page."""
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _write_summary(out: Path, loaded: _Loaded, data: ParetoData, model: ModelCosts | None,
                   files: dict[str, Path], notes: Sequence[str], title: str | None) -> SummaryData:
    """``summary.md`` and ``summary.html``, linking the figures already in ``files`` (which it extends)."""
    table = loaded.table
    sweep_ids = sorted(set(table["sweep_id"].dropna())) if "sweep_id" in table else []
    heading = title or f"Pareto report: {', '.join(sweep_ids) or 'sweep'}"
    relative = [str(p.relative_to(out)) for k, p in files.items() if k.startswith("png:")] + [HTML_FILE, TABLE_FILE]
    summary = summary_data(table, data, title=heading, source=loaded.source, model=model, figures=relative,
                           notes=notes, retime_command=_retime_command(loaded, sweep_ids))
    (out / SUMMARY_MD).write_text(render_markdown(summary))
    # The figures inlined (data: URIs): the page stands alone -- copied or mailed without png/, or previewed where
    # paths relative to it may not resolve (an artifact viewer) -- and loads nothing from anywhere.
    images = {t.title: _data_uri(files[f"png:{t.name}"]) for t in data.targets}
    (out / SUMMARY_HTML).write_text(summary_html(summary, images))
    files["summary_md"], files["summary_html"] = out / SUMMARY_MD, out / SUMMARY_HTML
    return summary


def _retime_command(loaded: _Loaded, sweep_ids: Sequence[str]) -> str:
    """The ``python -m analysis.retime`` line for this sweep (placeholders where the source is not MLflow)."""
    ref = loaded.ref
    if ref is not None:
        which = f"--sweep-id {quote(ref.sweep_id)}" if ref.sweep_id else f"--parent-run-id {ref.parent_run_id}"
        return (f"{RETIME_COMMAND} --tracking-uri {quote(ref.tracking_uri)} --experiment {quote(ref.experiment_name)} "
                f"{which}")
    sweep = f" --sweep-id {quote(sweep_ids[0])}" if len(sweep_ids) == 1 else ""
    return f"{RETIME_COMMAND} --tracking-uri URI --experiment NAME{sweep}"


def build_report(
    out_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    sweep_id: str | None = None,
    tune_dir: str | Path | None = None,
    table_path: str | Path | None = None,
    include_unfinished: bool = False,
    log_to_mlflow: bool = True,
    title: str | None = None,
) -> Report:
    """Load a sweep, compute its fronts and write the report (module docstring) to ``out_dir``.

    Give one source: MLflow (``tracking_uri`` with ``experiment`` -- newest sweep in it, or ``sweep_id`` -- or
    ``parent_run_id``), a Tune folder (``tune_dir``, optionally ``sweep_id``) or a saved table (``table_path``).
    Everything the report shows comes from the trial table (the unpruned model's size too: :mod:`analysis.unpruned`),
    so no artifact is downloaded and torch is never imported.

    Args:
        out_dir: Report folder (created).
        tracking_uri: MLflow tracking URI (default ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns.db``).
        experiment: MLflow experiment name or id.
        parent_run_id: The sweep's MLflow parent run.
        sweep_id: The sweep id (``bap.sweep_id`` tag; Tune experiment folder name).
        tune_dir: Ray Tune experiment folder or storage root: a local path or an object-store URI
            (``s3://bucket/sweeps``; see :func:`analysis.load.find_tune_experiments`).
        table_path: A ``trials.parquet`` from an earlier report.
        include_unfinished: Also use trials stopped early (their latest metrics).
        log_to_mlflow: Log ``out_dir`` as artifacts (``report/``) on the sweep's parent run (MLflow source only).
        title: Report title (default: ``Pareto report: <sweep id>``).

    Returns:
        The report.

    Raises:
        AnalysisError: No runs, runs without the needed metrics, or an empty front (the message says which).
    """
    loaded = _load(tracking_uri, experiment, parent_run_id, sweep_id, tune_dir, table_path)
    table = loaded.table
    notes = list(loaded.notes) + check_metrics(table, loaded.described)
    data = pareto_data(table, include_unfinished=include_unfinished)
    notes += _front_notes(data, table, loaded.described, include_unfinished)
    model, model_note = model_costs(table)
    if model_note:
        notes.append(model_note)

    out = Path(out_dir)
    files = _write_data(out, table, data)
    files.update(_write_figures(out, data, table, model, title))
    summary = _write_summary(out, loaded, data, model, files, notes, title)
    report = Report(out, table, data, summary, files, None, notes)
    if log_to_mlflow and loaded.ref is not None and loaded.ref.parent_run_id:
        report.logged_to = _log_artifacts(loaded.ref, out)
    return report


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _log_artifacts(ref: SweepRef, out: Path) -> str:
    from mlflow import MlflowClient

    try:
        MlflowClient(tracking_uri=ref.tracking_uri).log_artifacts(ref.parent_run_id, str(out), ARTIFACT_PATH)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise AnalysisError(f"the report was written to {out} but could not be logged to MLflow run "
                            f"{ref.parent_run_id}: {first}. Rerun with --no-log to skip logging.") from None
    return str(ref.parent_run_id)


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Pareto fronts of a sweep (accuracy vs params and MACs, per domain, mean and score): a Parquet "
        "table, PNGs, an interactive HTML page and a summary; logged to the sweep's MLflow parent run.",
    )
    g = p.add_argument_group("where the sweep is (one source)")
    g.add_argument("--tracking-uri", help=f"MLflow tracking URI (default $MLFLOW_TRACKING_URI or {DEFAULT_TRACKING_URI})")
    g.add_argument("--experiment", help="MLflow experiment name or id (alone: its newest sweep)")
    g.add_argument("--parent-run-id", help="the sweep's MLflow parent run id")
    g.add_argument("--sweep-id", help="the sweep id (bap.sweep_id tag; the Tune experiment folder name)")
    g.add_argument("--tune-dir", help="Ray Tune experiment folder, or the storage root above it; a local path or an "
                   "object-store URI (s3://bucket/sweeps, credentials and endpoint from the AWS_* environment)")
    g.add_argument("--table", help="a trials.parquet written by an earlier report")
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, help="report folder, e.g. reports/NAME")
    g.add_argument("--title", help="report title (default: Pareto report: <sweep id>)")
    g.add_argument("--include-unfinished", action="store_true",
                   help="also plot trials stopped early (latest metrics, budget not enforced)")
    g.add_argument("--no-log", action="store_true", help="do not log the report to the sweep's MLflow parent run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        report = build_report(
            args.out, tracking_uri=args.tracking_uri, experiment=args.experiment, parent_run_id=args.parent_run_id,
            sweep_id=args.sweep_id, tune_dir=args.tune_dir, table_path=args.table,
            include_unfinished=args.include_unfinished, log_to_mlflow=not args.no_log, title=args.title,
        )
    except AnalysisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    used = int(report.data.points_of(TARGET_MEAN).shape[0])
    print(f"[report] {len(report.table)} trials ({used} used), {len(report.pngs)} figures -> {report.out_dir}")
    if report.summary.headline:
        print(f"  in one line: {report.summary.headline}")
    for note in report.notes:
        print(f"  note: {note}")
    print(f"  summary: {report.files['summary_md']}  interactive: {report.files['html']}")
    if report.logged_to:
        print(f"  logged as artifacts '{ARTIFACT_PATH}/' of MLflow run {report.logged_to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
