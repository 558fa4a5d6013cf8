"""The analysis on a real smoke sweep (``sweeps/decathlon.py --preset smoke``): MLflow and Tune give the same table,
and the report is written and logged on the sweep's parent run.

Uses the session fixture ``smoke_sweep`` when ``tests/conftest.py`` provides it (one sweep shared with the sweep
tests); otherwise runs its own smoke sweep with the sweep tests' helpers. Slow: about a minute on 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis.load import find_sweep, load_mlflow, load_tune
from analysis.report import ARTIFACT_PATH, build_report
from analysis.table import (
    BUDGET_COST,
    CONFIG_PREFIX,
    FINISHED,
    REFERENCE_MACS,
    REFERENCE_PARAMS,
    RUN_ID,
    STATUS,
    SWEEP_ID,
    TRIAL_ID,
)
from bap import metrics as M

pytestmark = pytest.mark.slow
MINI_DOMAINS = {"digits", "faces", "glyphs", "signs", "textures"}


@pytest.fixture(scope="module")
def smoke(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A finished smoke sweep: ``.tracking_uri``, ``.experiment``, ``.storage_path`` and ``.name`` (its sweep id)."""
    try:
        return request.getfixturevalue("smoke_sweep")
    except pytest.FixtureLookupError:
        from tests.sweeps.driver import new_run, run_driver

        request.getfixturevalue("mini_data")  # builds the mini-decathlon cache the sweep reads
        run = new_run(tmp_path_factory.mktemp("smoke_analysis"), "smoke-analysis")
        run_driver(run, "--preset", "smoke")
        if run.returncode != 0:
            pytest.fail(f"smoke sweep failed with exit code {run.returncode}:\n{run.output[-8000:]}")
        return run


def sweep_id(smoke: Any) -> str:
    return getattr(smoke, "sweep_id", None) or smoke.name


def test_smoke_sweep_mlflow_and_tune_tables_agree(smoke: Any) -> None:
    ref = find_sweep(smoke.tracking_uri, smoke.experiment, sweep_id=sweep_id(smoke))
    assert ref.parent_run_id is not None
    from_mlflow = load_mlflow(smoke.tracking_uri, parent_run_id=ref.parent_run_id)
    from_tune = load_tune(smoke.storage_path, sweep_id=sweep_id(smoke))
    assert list(from_mlflow.columns) == list(from_tune.columns)
    pd.testing.assert_frame_equal(from_mlflow.drop(columns=RUN_ID), from_tune.drop(columns=RUN_ID))
    assert len(from_mlflow) == 4 and set(from_mlflow[M.BUDGET]) == {0.25, 0.5, 0.75, 1.0}
    assert {c.split("/", 1)[1] for c in from_mlflow.columns if c.startswith(f"{M.VAL_ACC}/")} == MINI_DOMAINS
    assert set(from_mlflow[STATUS]) <= {"FINISHED", "KILLED"}
    assert (from_mlflow[FINISHED] == (from_mlflow[STATUS] == "FINISHED")).all()
    assert from_mlflow[[M.MEAN_VAL_ACC, M.UNION_PARAMS_RATIO, M.UNION_MACS_RATIO]].notna().all().all()
    # Every metric a real sweep reports is in the vocabulary: no extra (unknown) metric columns.
    derived = {FINISHED, RUN_ID, STATUS, SWEEP_ID, TRIAL_ID, BUDGET_COST, REFERENCE_PARAMS, REFERENCE_MACS}
    unknown = [c for c in from_mlflow.columns if not (M.is_known_metric(c) or c in derived
                                                      or c.startswith(CONFIG_PREFIX) or c.split("/", 1)[0] in derived)]
    assert not unknown
    assert from_mlflow[[M.UNPRUNED_PARAMS, M.UNPRUNED_MACS]].notna().all().all()


def test_smoke_sweep_report(smoke: Any, tmp_path: Path) -> None:
    ref = find_sweep(smoke.tracking_uri, smoke.experiment, sweep_id=sweep_id(smoke))
    table = load_mlflow(smoke.tracking_uri, parent_run_id=ref.parent_run_id)
    # Grid mode's ASHA has one bracket per budget, so each budget's only trial runs to its pruned model, and the
    # default report (finished trials only, as `make demo` writes it) plots all four budgets.
    assert table[FINISHED].all()
    report = build_report(tmp_path / "report", tracking_uri=smoke.tracking_uri, parent_run_id=ref.parent_run_id)
    mean = report.data.points[report.data.points["target"] == "mean"]
    assert sorted(mean["budget"]) == [0.25, 0.5, 0.75, 1.0]
    assert set(report.pngs) >= MINI_DOMAINS | {"mean"}
    assert all(p.stat().st_size > 20_000 for p in report.pngs.values())
    assert report.logged_to == ref.parent_run_id
    assert report.summary.model is not None and report.summary.model.unpruned_params_ratio > 1
    # What the budget bounded is logged with every trial and said in the report, with the one-line reading.
    assert set(table["budget_cost"]) == {"params"} and report.summary.budget_units == ["params"]
    text = (tmp_path / "report" / "summary.md").read_text()
    assert "counted in parameters (budget_cost=params)" in text
    assert report.summary.headline and report.summary.headline.startswith("budget 0.5 (parameters): 5 domains in ")
    assert f"**{report.summary.headline}**" in text
    from mlflow import MlflowClient

    logged = {f.path for f in MlflowClient(smoke.tracking_uri).list_artifacts(ref.parent_run_id, ARTIFACT_PATH)}
    assert f"{ARTIFACT_PATH}/summary.md" in logged and f"{ARTIFACT_PATH}/trials.parquet" in logged
