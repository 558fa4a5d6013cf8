"""Loading a sweep: a real SQLite MLflow store and a Tune folder of the same sweep give the same trial table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.load import find_sweep, load_mlflow, load_tune, newest_tune_experiment
from analysis.synthetic import SyntheticSweep, write_synthetic_sweep
from analysis.table import (
    CONFIG_PREFIX,
    FINISHED,
    REFERENCE_MACS,
    REFERENCE_PARAMS,
    RUN_ID,
    STATUS,
    TRIAL_ID,
    TrialRecord,
    build_table,
    param_text,
    parse_param,
    read_parquet,
    to_parquet,
)
from bap import metrics as M

BUDGETS = (0.25, 0.5, 1.0)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSweep:
    """One synthetic sweep in a real SQLite MLflow store (real client) and in a matching Tune folder."""
    root = tmp_path_factory.mktemp("store")
    return write_synthetic_sweep(f"sqlite:///{root / 'mlruns.db'}", root / "ray_results", budgets=BUDGETS,
                                 trials_per_budget=2, repeats=1, killed=1, failed=1)


def assert_same_table(from_mlflow: pd.DataFrame, from_tune: pd.DataFrame) -> None:
    """Equal in columns, dtypes and values; only ``run_id`` differs (MLflow's own id, missing in Tune)."""
    assert list(from_mlflow.columns) == list(from_tune.columns)
    assert from_mlflow[RUN_ID].notna().all() and from_tune[RUN_ID].isna().all()
    pd.testing.assert_frame_equal(from_mlflow.drop(columns=RUN_ID), from_tune.drop(columns=RUN_ID))


def test_mlflow_and_tune_give_the_same_table(sweep: SyntheticSweep) -> None:
    from_mlflow = load_mlflow(sweep.tracking_uri, sweep.experiment)
    from_tune = load_tune(sweep.storage_path)
    assert_same_table(from_mlflow, from_tune)
    assert len(from_mlflow) == sweep.trials == 3 * 2 + 1 + 1 + 1


def test_table_content(sweep: SyntheticSweep) -> None:
    table = load_tune(Path(sweep.storage_path) / sweep.sweep_id)
    assert table[STATUS].value_counts().to_dict() == {"FINISHED": 7, "KILLED": 1, "FAILED": 1}
    assert (table[FINISHED] == (table[STATUS] == "FINISHED")).all()
    assert set(table[M.BUDGET]) == set(BUDGETS)
    assert table[TRIAL_ID].is_unique and table["sweep_id"].eq(sweep.sweep_id).all()
    # Every domain's core metrics, ratios consistent with the recovered reference sizes.
    for d in ("aircraft", "cifar100", "dtd", "gtsrb"):
        for name in (M.VAL_ACC, M.PARAMS, M.MACS, M.PARAMS_RATIO, M.MACS_RATIO, M.USAGE):
            assert M.domain_metric(name, d) in table
        ref = table[M.domain_metric(REFERENCE_PARAMS, d)]
        assert ref.nunique() == 1
        np.testing.assert_allclose(table[M.domain_metric(M.PARAMS, d)] / ref, table[M.domain_metric(M.PARAMS_RATIO, d)])
    assert table[REFERENCE_PARAMS].nunique() == 1
    # Only configuration that varies is kept; Optuna bookkeeping never.
    config = [c for c in table.columns if c.startswith(CONFIG_PREFIX)]
    assert {"config/budget", "config/sharing", "config/lr"} <= set(config)
    assert not {"config/width", "config/optuna_trial", "config/optuna_study", "config/epochs"} & set(config)
    assert table["config/lr"].dtype == np.float64 and table["config/sharing"].dtype == "str"
    # Tune's bookkeeping keys are not metrics; the sweep's resumed_from_epoch is one (bap.metrics.FLAT_METRICS).
    assert not {"training_iteration", "time_this_iter_s", "time_total_s", "pid", "done"} & set(table.columns)
    assert table[M.RESUMED_FROM_EPOCH].eq(0).all()  # every synthetic trial ran fresh
    # The unpruned model's size, reported every epoch by every trial: one architecture, one size.
    assert table[M.UNPRUNED_PARAMS].nunique() == 1 and table[M.UNPRUNED_MACS].nunique() == 1
    assert (table[M.UNPRUNED_PARAMS] > table[REFERENCE_PARAMS]).all()
    assert (table[M.UNPRUNED_MACS] == table[REFERENCE_MACS]).all()
    # Identity first (with what the budget bounds, as logged), then the metric columns, which keep their dtype and
    # the order of earlier tables (core first).
    assert list(table.columns[:6]) == ["sweep_id", "trial_id", "run_id", "status", "finished", "budget_cost"]
    assert list(table.columns[6:17]) == [
        M.BUDGET, M.EPOCH, M.MEAN_VAL_ACC, M.SCORE, M.UNION_PARAMS, M.UNION_MACS, M.UNION_PARAMS_RATIO,
        M.UNION_MACS_RATIO, REFERENCE_PARAMS, REFERENCE_MACS, M.PRUNED_AGREEMENT]
    assert all(table[c].dtype == np.float64 for c in table.columns[6:] if not c.startswith(CONFIG_PREFIX))
    # The unfinished trials keep their latest (epoch 1) metrics but have no final ones.
    unfinished = table[~table[FINISHED]]
    assert unfinished[M.EPOCH].eq(1).all() and unfinished[M.PRUNED_AGREEMENT].isna().all()
    assert unfinished[M.MEAN_VAL_ACC].notna().all()


def test_mlflow_selection_by_parent_sweep_and_experiment_agree(sweep: SyntheticSweep) -> None:
    by_experiment = load_mlflow(sweep.tracking_uri, sweep.experiment)
    by_parent = load_mlflow(sweep.tracking_uri, parent_run_id=sweep.parent_run_id)
    by_sweep = load_mlflow(sweep.tracking_uri, sweep.experiment, sweep_id=sweep.sweep_id)
    pd.testing.assert_frame_equal(by_experiment, by_parent)
    pd.testing.assert_frame_equal(by_experiment, by_sweep)
    ref = find_sweep(sweep.tracking_uri, parent_run_id=sweep.parent_run_id)
    assert (ref.sweep_id, ref.experiment_name) == (sweep.sweep_id, sweep.experiment)


def test_mlflow_pagination(sweep: SyntheticSweep) -> None:
    """Pages of 2 runs (5 pages) give the same table as one page."""
    paged = load_mlflow(sweep.tracking_uri, sweep.experiment, page_size=2)
    pd.testing.assert_frame_equal(paged, load_mlflow(sweep.tracking_uri, sweep.experiment))


def test_parquet_round_trip(sweep: SyntheticSweep, tmp_path: Path) -> None:
    table = load_mlflow(sweep.tracking_uri, sweep.experiment)
    path = to_parquet(table, tmp_path / "deep" / "trials.parquet")
    pd.testing.assert_frame_equal(read_parquet(path), table)
    import pyarrow.parquet as pq

    assert pq.read_schema(path).field(M.MEAN_VAL_ACC).type == "double"


def test_newest_sweep_is_chosen_and_others_selectable(tmp_path: Path) -> None:
    """Two sweeps in one experiment / one Tune root: the newest by default, the other by its id."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    kwargs = dict(budgets=(0.5,), trials_per_budget=1, repeats=0, killed=0, failed=0, epochs=1)
    write_synthetic_sweep(uri, tmp_path / "tune", sweep_id="first", seed=1, **kwargs)
    write_synthetic_sweep(uri, tmp_path / "tune", sweep_id="second", seed=2, **kwargs)
    ref = find_sweep(uri, "bap-synthetic")
    assert (ref.sweep_id, ref.sweeps_in_experiment) == ("second", 2)
    assert load_mlflow(uri, "bap-synthetic")["sweep_id"].tolist() == ["second"]
    assert load_mlflow(uri, "bap-synthetic", sweep_id="first")["sweep_id"].tolist() == ["first"]
    experiment, count = newest_tune_experiment(tmp_path / "tune")
    assert count == 2 and experiment is not None
    assert load_tune(tmp_path / "tune", sweep_id="first")["sweep_id"].tolist() == ["first"]
    assert_same_table(load_mlflow(uri, "bap-synthetic", sweep_id="first"), load_tune(tmp_path / "tune", "first"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(experiment="nope"), "no MLflow experiment 'nope'"),
        (dict(parent_run_id="0123456789abcdef0123456789abcdef"), "no MLflow run"),
        (dict(), "say which sweep"),
    ],
)
def test_mlflow_lookup_errors(sweep: SyntheticSweep, kwargs: dict, message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        load_mlflow(sweep.tracking_uri, **kwargs)


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    with pytest.raises(AnalysisError, match="does not exist"):
        load_mlflow(f"sqlite:///{db}", "x")
    assert not db.exists()


def test_tune_folder_edge_cases(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="does not exist"):
        load_tune(tmp_path / "absent")
    assert load_tune(tmp_path).empty  # a folder without trials: an empty table, not an error
    # A trial that never reported, a truncated last line, NaN metrics: read what is there.
    trial = tmp_path / "exp" / "trial_0abc1234"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps({"budget": 0.5, "sharing": "none"}))
    empty = tmp_path / "exp" / "trial_0abc9999"
    empty.mkdir()
    (empty / "params.json").write_text(json.dumps({"budget": 0.75, "sharing": "union"}))
    lines = [json.dumps({"trial_id": "0abc1234", M.MEAN_VAL_ACC: 0.5, M.SCORE: math.nan, "done": False}),
             '{"trial_id": "0abc1234", "mean_val_acc": 0.']
    (trial / "result.json").write_text("\n".join(lines))
    table = load_tune(tmp_path / "exp")
    assert table[TRIAL_ID].tolist() == ["0abc1234", "0abc9999"]
    assert table[M.MEAN_VAL_ACC].tolist()[0] == 0.5 and math.isnan(table[M.MEAN_VAL_ACC].tolist()[1])
    assert table[M.BUDGET].tolist() == [0.5, 0.75]  # from the configuration before any report
    assert table[STATUS].tolist() == ["KILLED", "KILLED"]


def test_params_text_round_trip() -> None:
    config = {"budget": 0.25, "lr": 0.012345678901234567, "flag": True, "none": None, "name": "jaccard",
              "domains": ["a", "b"], "nested": {"x": 1}}
    text = param_text(config)
    assert text == {"budget": "0.25", "lr": repr(config["lr"]), "flag": "True", "none": "None",
                    "name": "jaccard", "domains": '["a", "b"]', "nested.x": "1"}
    # Floats survive exactly (str of a float round-trips), so MLflow params and params.json agree.
    assert [parse_param(v) for v in text.values()] == [0.25, config["lr"], True, None, "jaccard", '["a", "b"]', 1.0]


def test_build_table_of_nothing_has_the_core_columns() -> None:
    table = build_table([])
    assert table.empty and {TRIAL_ID, STATUS, FINISHED, M.MEAN_VAL_ACC, M.UNION_PARAMS_RATIO} <= set(table.columns)
    one = build_table([TrialRecord("s", "t", "RUNNING", {M.MEAN_VAL_ACC: 0.5, "junk": 1.0, "flag": True})])
    assert "flag" not in one and one[M.MEAN_VAL_ACC].tolist() == [0.5]  # not a number: not a metric
    assert one["junk"].tolist() == [1.0]  # a metric the vocabulary does not know is kept, not dropped


def test_metric_columns_come_from_the_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every vocabulary metric a trial reports is a column; unknown ones follow the known ones, sorted."""
    metrics = {M.MEAN_VAL_ACC: 0.5, M.UNPRUNED_PARAMS: 7.0, M.RESUMED_FROM_EPOCH: 2.0, "zeta": 1.0, "alpha": 2.0,
               M.domain_metric(M.SWITCHES_ON, "d"): 0.5, M.domain_metric("colour", "d"): 3.0}
    table = build_table([TrialRecord("s", "t", "RUNNING", metrics, {"budget": "0.5", "lr": "0.1"}),
                         TrialRecord("s", "u", "RUNNING", {M.MEAN_VAL_ACC: 0.6}, {"budget": "0.5", "lr": "0.2"})])
    known = [c for c in table.columns if M.is_known_metric(c)]
    assert {M.UNPRUNED_PARAMS, M.RESUMED_FROM_EPOCH, M.domain_metric(M.SWITCHES_ON, "d")} <= set(known)
    assert M.UNPRUNED_MACS not in table  # not core, never reported
    columns = list(table.columns)
    extra = ["alpha", M.domain_metric("colour", "d"), "zeta"]
    assert columns[columns.index(extra[0]):columns.index("zeta") + 1] == extra
    assert max(columns.index(c) for c in known) < columns.index(extra[0]) < columns.index("config/lr")
    assert table["zeta"].tolist()[0] == 1.0 and math.isnan(table["zeta"].tolist()[1])
    # A name added to the vocabulary becomes a known column without touching the analysis.
    monkeypatch.setattr(M, "FLAT_METRICS", (*M.FLAT_METRICS, "zeta"))
    monkeypatch.setattr(M, "PER_DOMAIN", (*M.PER_DOMAIN, "colour"))
    grown = list(build_table([TrialRecord("s", "t", "RUNNING", metrics)]).columns)
    kept = [c for c in columns if c not in extra and not c.startswith(CONFIG_PREFIX)]
    assert [c for c in grown if c in kept] == kept  # the columns already there keep their order
    assert grown.index("zeta") < grown.index(M.domain_metric(M.SWITCHES_ON, "d"))  # a flat metric, with the flat ones
    assert grown.index(M.domain_metric("colour", "d")) < grown.index("alpha")  # a per-domain one, with its domain
    assert grown[-1] == "alpha"  # the only metric still unknown


def test_finished_is_the_shared_rule() -> None:
    """finished = bap.metrics.is_finished: pruned_agreement reported as a number (a NaN or a bool is not)."""
    cases = {"a": {M.PRUNED_AGREEMENT: 0.0}, "b": {M.PRUNED_AGREEMENT: math.nan}, "c": {M.PRUNED_AGREEMENT: True},
             "d": {M.EPOCH: 3.0}}
    table = build_table([TrialRecord("s", k, "FINISHED", v) for k, v in cases.items()])
    assert table[FINISHED].tolist() == [M.is_finished(v) for v in cases.values()] == [True, False, False, False]
