"""``python -m analysis.retime`` on a real smoke sweep (SQLite MLflow store, no mocks): the trials on the report's
fronts re-timed alone on the CPU, the new latency logged as the runs' latest metric values with the tag
``bap.latency_retimed``, the runs still FINISHED with their end time; bad input ends with one line on stderr, exit
code 2, nothing logged. Never asserts a time, only that it is finite and positive.

Slow: it uses the session fixture ``smoke_sweep`` (a real sweep, shared with the sweep, report and export tests) --
on a copy of its MLflow database, so the shared store keeps the times the sweep measured.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from analysis.load import find_sweep, load_mlflow
from analysis.retime import DEFAULT_MIN_TIME_S, main, select_front
from analysis.table import LATENCY_RETIMED, RUN_ID
from bap import metrics as M

pytestmark = pytest.mark.slow
MS = [M.latency_metric("cpu", batch) for batch in M.LATENCY_BATCHES]


def _sweep_id(smoke: Any) -> str:
    return getattr(smoke, "sweep_id", None) or smoke.name


@dataclass
class Retimed:
    uri: str
    experiment: str
    sweep_id: str
    stdout: str
    stderr: str
    chosen: list[str]  # the run ids on the fronts
    before: dict[str, Any]  # run id -> the run before
    after: dict[str, Any]  # run id -> the run after


def _runs(uri: str, run_ids: list[str]) -> dict[str, Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return {run_id: client.get_run(run_id) for run_id in run_ids}


@pytest.fixture(scope="module")
def retimed(smoke_sweep: Any, tmp_path_factory: pytest.TempPathFactory) -> Retimed:
    """The default selection (the fronts' trials) re-timed once for the module, on a copy of the sweep's store."""
    source = Path(smoke_sweep.tracking_uri[len("sqlite:///"):])
    copy = tmp_path_factory.mktemp("retime") / "mlruns.db"
    shutil.copy(source, copy)  # artifacts stay where they are (absolute locations): only read
    uri, sweep_id = f"sqlite:///{copy}", _sweep_id(smoke_sweep)
    table = load_mlflow(uri, smoke_sweep.experiment, sweep_id=sweep_id)
    chosen = select_front(table)
    assert chosen, "the smoke sweep has no finished trial on a front"
    before = _runs(uri, chosen)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["--tracking-uri", uri, "--experiment", smoke_sweep.experiment, "--sweep-id", sweep_id,
                     "--min-time-s", "0.02", "--threads", "1"])
    assert code == 0, stdout.getvalue() + stderr.getvalue()
    return Retimed(uri, smoke_sweep.experiment, sweep_id, stdout.getvalue(), stderr.getvalue(), chosen, before,
                   _runs(uri, chosen))


def test_default_min_time_is_bap_latencys() -> None:
    from bap.latency import DEFAULT_MIN_TIME_S as BAP_DEFAULT

    assert DEFAULT_MIN_TIME_S == BAP_DEFAULT


def test_the_fronts_trials_are_retimed_logged_and_stay_finished(retimed: Retimed) -> None:
    for run_id in retimed.chosen:
        before, after = retimed.before[run_id], retimed.after[run_id]
        assert after.info.status == "FINISHED" == before.info.status
        assert after.info.end_time == before.info.end_time
        assert after.data.tags.get(M.TAG_LATENCY_RETIMED)
        metrics = after.data.metrics
        for name in MS:
            assert math.isfinite(metrics[name]) and metrics[name] > 0, (name, metrics.get(name))
            domains = [k for k in metrics if k.startswith(f"{name}/")]
            assert domains and all(math.isfinite(metrics[k]) and metrics[k] > 0 for k in domains)
        assert metrics[M.LATENCY_THREADS] == 1
        assert metrics[M.LATENCY_NEIGHBOURS] >= 0
        assert metrics[M.PRUNED_AGREEMENT] == before.data.metrics[M.PRUNED_AGREEMENT]  # the rest untouched
        assert run_id in retimed.stdout and run_id in retimed.stdout.split("\n", 2)[-1]
    assert "->" in retimed.stdout and "batch 1" in retimed.stdout


def test_the_table_reads_the_new_values_and_the_tag(retimed: Retimed) -> None:
    from mlflow import MlflowClient

    table = load_mlflow(retimed.uri, retimed.experiment, sweep_id=retimed.sweep_id).set_index(RUN_ID)
    client = MlflowClient(tracking_uri=retimed.uri)
    assert LATENCY_RETIMED in table
    for run_id in retimed.chosen:
        assert table.loc[run_id, LATENCY_RETIMED] == retimed.after[run_id].data.tags[M.TAG_LATENCY_RETIMED]
        for name in MS:
            assert table.loc[run_id, name] == retimed.after[run_id].data.metrics[name]
            history = client.get_metric_history(run_id, name)
            assert len(history) >= 1 and history[-1].value == table.loc[run_id, name]
    others = table.index.difference(retimed.chosen)
    assert table.loc[others, LATENCY_RETIMED].isna().all()


def test_no_log_prints_and_logs_nothing(retimed: Retimed) -> None:
    run_id = retimed.chosen[0]
    before = _runs(retimed.uri, [run_id])[run_id]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["--tracking-uri", retimed.uri, "--run-id", run_id, "--min-time-s", "0.01", "--no-log"]) == 0
    after = _runs(retimed.uri, [run_id])[run_id]
    assert after.data.metrics == before.data.metrics and after.data.tags == before.data.tags
    assert "no (--no-log)" in stdout.getvalue()


def _bad_cases(retimed: Retimed, bare: tuple[str, str]) -> dict[str, tuple[list[str], str]]:
    uri, child = retimed.uri, retimed.chosen[0]
    parent = find_sweep(uri, retimed.experiment, sweep_id=retimed.sweep_id).parent_run_id
    return {
        "unknown run": (["--tracking-uri", uri, "--run-id", "0" * 32], "no MLflow run"),
        "parent run": (["--tracking-uri", uri, "--run-id", str(parent)], "parent run"),
        "unfinished trial": (["--tracking-uri", bare[0], "--run-id", bare[1]], "has no pruned model"),
        "no sweep": (["--tracking-uri", bare[0], "--experiment", "empty"], "no "),
        "unknown experiment": (["--tracking-uri", uri, "--experiment", "nope"], "no MLflow experiment"),
        "nothing chosen": (["--tracking-uri", uri], "say which trials"),
        "both": (["--tracking-uri", uri, "--run-id", child, "--experiment", retimed.experiment], "not both"),
        "min time": (["--tracking-uri", uri, "--run-id", child, "--min-time-s", "0"], "--min-time-s"),
        "threads": (["--tracking-uri", uri, "--run-id", child, "--threads", "0"], "--threads"),
    }


@pytest.mark.parametrize("case", ["unknown run", "parent run", "unfinished trial", "no sweep", "unknown experiment",
                                  "nothing chosen", "both", "min time", "threads"])
def test_bad_input_exits_2_and_logs_nothing(case: str, retimed: Retimed, bare_store: tuple[str, str],
                                            capsys: pytest.CaptureFixture) -> None:
    argv, says = _bad_cases(retimed, bare_store)[case]
    runs_before = _runs(retimed.uri, retimed.chosen)
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], captured.err
    after = _runs(retimed.uri, retimed.chosen)
    assert all(after[r].data.metrics == runs_before[r].data.metrics for r in retimed.chosen)
