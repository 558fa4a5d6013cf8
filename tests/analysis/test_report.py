"""The report end to end: a real SQLite MLflow store and a Tune folder in, Parquet/PNG/HTML/summary out, artifacts
logged on the sweep's parent run; bad input ends with one line on stderr and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from analysis.load import load_mlflow
from analysis.report import ARTIFACT_PATH, build_report, main
from analysis.synthetic import SyntheticSweep, write_synthetic_sweep
from analysis.table import RUN_ID, read_parquet
from bap import metrics as M

REPO = Path(__file__).resolve().parents[2]
TARGETS = ["aircraft", "cifar100", "dtd", "gtsrb", "mean", "score"]


@dataclass
class Store:
    uri: str
    sweep: SyntheticSweep  # a complete sweep (experiment "bap-synthetic")
    killed_only: SyntheticSweep  # every trial stopped early (experiment "killed-only")
    before_unpruned: SyntheticSweep  # logged before the unpruned costs were (experiment "before-unpruned")
    root: Path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """One SQLite store: a full sweep, an empty experiment, runs without metrics, a sweep without finished trials,
    a sweep written before the unpruned costs were logged."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("report-store")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    sweep = write_synthetic_sweep(uri, root / "ray_results", budgets=(0.25, 0.5, 1.0), trials_per_budget=2,
                                  repeats=1, killed=1, failed=1)
    killed = write_synthetic_sweep(uri, root / "ray_killed", experiment="killed-only", sweep_id="killed",
                                   budgets=(0.5, 1.0), trials_per_budget=0, repeats=0, killed=2, failed=0)
    before = write_synthetic_sweep(uri, root / "ray_before", experiment="before-unpruned", sweep_id="before",
                                   budgets=(0.5, 1.0), trials_per_budget=2, repeats=0, killed=1, failed=0, epochs=2,
                                   unpruned_costs=False)
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("empty", artifact_location=(root / "mlruns" / "empty").as_uri())
    bare = client.create_experiment("no-metrics", artifact_location=(root / "mlruns" / "bare").as_uri())
    parent = client.create_run(bare, tags={M.TAG_ROLE: M.ROLE_SWEEP, M.TAG_SWEEP_ID: "bare"})
    for i in range(2):  # trials that crashed before their first report
        client.create_run(bare, tags={M.TAG_ROLE: M.ROLE_TRIAL, M.TAG_SWEEP_ID: "bare", M.TAG_TRIAL_ID: f"b{i}",
                                      M.TAG_PARENT_RUN: parent.info.run_id})
    return Store(uri, sweep, killed, before, root)


def test_report_from_mlflow(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report"
    assert main(["--tracking-uri", store.uri, "--experiment", "bap-synthetic", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"logged as artifacts '{ARTIFACT_PATH}/' of MLflow run {store.sweep.parent_run_id}" in printed
    # The table is saved as Parquet, identical to what the loader returns.
    pd.testing.assert_frame_equal(read_parquet(out / "trials.parquet"),
                                  load_mlflow(store.uri, parent_run_id=store.sweep.parent_run_id))
    assert len(read_parquet(out / "fronts.parquet")) and len(read_parquet(out / "hypervolumes.parquet"))
    for target in TARGETS:
        png = out / "png" / f"{target}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000, target
    page = (out / "pareto.html").read_text()
    assert all(f'"label":"{t}"' in page.replace(" ", "") for t in TARGETS)
    summary = (out / "summary.md").read_text()
    assert "## Per budget: best trial by Decathlon score" in summary
    assert "| 0.25 |" in summary and "| all budgets |" in summary
    assert "Unpruned multi-domain model" in summary  # from the trials' unpruned_params / unpruned_macs
    assert "stopped early or unfinished are left out" in summary
    assert "<table>" in (out / "summary.html").read_text()
    # Logged on the parent run.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store.uri)
    logged = {f.path for f in client.list_artifacts(store.sweep.parent_run_id, ARTIFACT_PATH)}
    assert {f"{ARTIFACT_PATH}/summary.md", f"{ARTIFACT_PATH}/trials.parquet", f"{ARTIFACT_PATH}/pareto.html",
            f"{ARTIFACT_PATH}/png"} <= logged
    pngs = {Path(f.path).name for f in client.list_artifacts(store.sweep.parent_run_id, f"{ARTIFACT_PATH}/png")}
    assert pngs == {f"{t}.png" for t in TARGETS}


def test_report_from_tune_matches_mlflow(store: Store, tmp_path: Path) -> None:
    from_mlflow = build_report(tmp_path / "m", tracking_uri=store.uri, parent_run_id=store.sweep.parent_run_id,
                               log_to_mlflow=False)
    from_tune = build_report(tmp_path / "t", tune_dir=store.sweep.storage_path)
    assert from_mlflow.logged_to is None and from_tune.logged_to is None
    pd.testing.assert_frame_equal(from_mlflow.table.drop(columns=RUN_ID), from_tune.table.drop(columns=RUN_ID))
    pd.testing.assert_frame_equal(from_mlflow.data.hypervolumes, from_tune.data.hypervolumes)
    assert from_mlflow.summary.model == from_tune.summary.model is not None
    assert set(from_tune.pngs) == set(TARGETS)
    # A saved table renders the same report without any tracking store.
    again = build_report(tmp_path / "again", table_path=tmp_path / "t" / "trials.parquet")
    pd.testing.assert_frame_equal(again.data.points, from_tune.data.points)


def test_a_sweep_logged_before_unpruned_costs_still_reports(store: Store, tmp_path: Path) -> None:
    """No unpruned_* metrics: every figure is drawn, only the unpruned landmark is missing, and a note says why."""
    from_mlflow = build_report(tmp_path / "m", tracking_uri=store.uri, experiment="before-unpruned",
                               log_to_mlflow=False)
    from_tune = build_report(tmp_path / "t", tune_dir=Path(store.before_unpruned.storage_path))
    again = build_report(tmp_path / "again", table_path=tmp_path / "m" / "trials.parquet")
    for report in (from_mlflow, from_tune, again):
        assert M.UNPRUNED_PARAMS not in report.table and report.summary.model is None
        assert set(report.pngs) == set(TARGETS)
        assert any("written before unpruned costs were logged" in n for n in report.notes), report.notes
        summary = (report.out_dir / "summary.md").read_text()
        assert "Unpruned multi-domain model" not in summary and "written before unpruned costs" in summary
    page = (tmp_path / "m" / "pareto.html").read_text()
    assert "unpruned multi-domain model (" not in page and "1 single-domain ResNet-26" in page


def test_report_imports_no_torch(store: Store, tmp_path: Path) -> None:
    """The report from an MLflow store and from a saved table, in a fresh process: torch is never imported (the
    synthetic sweep that wrote the store counted its costs with torch here, in the test's own process)."""
    code = """if True:
        import json, sys
        from analysis.report import build_report
        uri, parent, out = sys.argv[1:]
        report = build_report(out + "/m", tracking_uri=uri, parent_run_id=parent, log_to_mlflow=False)
        again = build_report(out + "/t", table_path=out + "/m/trials.parquet")
        torch = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print(json.dumps({"torch": torch, "model": report.summary.model == again.summary.model is not None,
                          "pngs": sorted(report.pngs)}))
    """
    run = subprocess.run([sys.executable, "-c", code, store.uri, store.sweep.parent_run_id, str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"torch": [], "model": True, "pngs": sorted(TARGETS)}


def test_include_unfinished_reports_a_sweep_stopped_early(store: Store, tmp_path: Path) -> None:
    report = build_report(tmp_path / "r", tracking_uri=store.uri, experiment="killed-only", include_unfinished=True)
    assert len(report.data.points_of("mean")) == 2
    assert any("stopped early are included" in n for n in report.notes)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "empty"], "no runs found for experiment 'empty'"),
        (["--experiment", "no-metrics"], "2 run(s) found for sweep 'bare'"),
        (["--experiment", "killed-only"], "the Pareto front is empty: none of the 2 trials"),
        (["--experiment", "absent"], "no MLflow experiment 'absent'"),
        (["--parent-run-id", "ffffffffffffffffffffffffffffffff"], "no MLflow run"),
        (["--sweep-id", "x"], "--sweep-id needs --experiment"),
        (["--experiment", "bap-synthetic", "--sweep-id", "nope"], "no runs found for sweep 'nope'"),
    ],
)
def test_bad_mlflow_input_exits_2(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str],
                                  message: str) -> None:
    assert main(["--tracking-uri", store.uri, *args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tune-dir", "{root}/absent"], "does not exist"),
        (["--tune-dir", "{root}"], "no runs found: no Ray Tune experiment"),
        (["--table", "{root}/absent.parquet"], "no trial table"),
        (["--tracking-uri", "sqlite:///{root}/absent.db", "--experiment", "x"], "no MLflow store"),
        (["--tune-dir", "{root}", "--table", "{root}/t.parquet"], "give one source"),
        ([], "say which sweep to report"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    args = [a.format(root=tmp_path) for a in args]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_process_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    """The real entry point, in its own process: no traceback on bad input."""
    run = subprocess.run([sys.executable, "-m", "analysis.report", "--tune-dir", str(tmp_path), "--out",
                          str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().startswith("error: no runs found") and "Traceback" not in run.stderr
