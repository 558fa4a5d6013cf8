"""MLflow glue against a real SQLite store: reachability, one run per trial, statuses, resume reconciliation."""

from __future__ import annotations

import socket

import pytest
from mlflow import MlflowClient

from bap import metrics as M
from sweeps.config import ConfigError
from sweeps.resume import ended_trials
from sweeps.tracking import (
    SweepRun,
    TrialRunLogger,
    check_tracking_uri,
    numeric_metrics,
    trial_run_name,
    unique_name,
)


class FakeTrial:
    """What the callback reads from a Tune Trial: its public properties."""

    def __init__(self, trial_id: str, budget: float, status: str = "RUNNING") -> None:
        self.trial_id, self.status = trial_id, status
        self.config = {"budget": budget, "sharing": "jaccard", "lr": 0.1, "optuna_trial": 0}
        self.last_result: dict = {}
        self.error_file: str | None = None
        self.num_failures = 0
        self.path: str | None = None

    def __str__(self) -> str:
        return f"run_trial_{self.trial_id}"


def epoch_result(epoch: int, acc: float, final: bool = False) -> dict:
    out = {M.EPOCH: float(epoch), M.MEAN_VAL_ACC: acc, "val_acc/digits": acc, "usage/digits": 0.5,
           "training_iteration": epoch, "time_this_iter_s": 1.0, "config/lr": 0.1, "done": False, "hostname": "h"}
    if final:
        out[M.PRUNED_AGREEMENT] = 1.0
    return out


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One SQLite store for the module (creating the schema takes seconds); each test uses its own sweep id."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlruns.db"


def _logger(parent: SweepRun, **kw) -> TrialRunLogger:
    cb = TrialRunLogger(parent.uri, parent.experiment_id, parent.run_id, parent.sweep_id,
                        fixed_params={"epochs": 3, "width": 0.125}, tags={M.TAG_PRESET: "smoke"}, **kw)
    cb.setup()
    return cb


def _run(cb: TrialRunLogger, trial: FakeTrial, results: list[dict], end: str | None) -> None:
    cb.on_trial_start(0, [], trial)
    for r in results:
        trial.last_result = r
        cb.on_trial_result(0, [], trial, r)
    if end == "complete":
        trial.status = "TERMINATED"
        cb.on_trial_complete(0, [], trial)
    elif end == "error":
        trial.status = "ERROR"
        cb.on_trial_error(0, [], trial)


def _children(parent: SweepRun):
    return {r.data.tags[M.TAG_TRIAL_ID]: r for r in parent.child_runs()}


def test_unreachable_server_fails_fast_with_a_clear_message():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Fast means: the refused connection itself is the answer (no MLflow client and its retries behind it).
    with pytest.raises(ConfigError, match=r"MLflow tracking server http://127.0.0.1:\d+ is unreachable \(.*refused"):
        check_tracking_uri(f"http://127.0.0.1:{port}", timeout=3)


def test_silent_server_times_out_quickly():
    # A socket that accepts connections but never answers: the case that used to hang a sweep for minutes.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        # Quickly means: the check's own deadline ends it (a timeout, not MLflow's minutes of retries).
        with pytest.raises(ConfigError, match=r"unreachable \(timed out\)"):
            check_tracking_uri(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=2)


def test_sqlite_checks(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        check_tracking_uri(f"sqlite:///{tmp_path}/nope/mlruns.db")
    check_tracking_uri(f"sqlite:///{tmp_path}/mlruns.db")
    assert not (tmp_path / "mlruns.db").exists()  # validation writes nothing
    with pytest.raises(ConfigError, match="neither a server URL nor a database URL"):
        check_tracking_uri("mlruns")


def test_parent_and_one_child_per_trial_with_statuses(uri):
    parent = SweepRun(uri, "exp", "sweep-1")
    parent.start({"preset": "smoke", "train": {"epochs": 3}}, {M.TAG_PRESET: "smoke"})
    cb = _logger(parent)
    finished, stopped, failed = FakeTrial("aaa", 0.25), FakeTrial("bbb", 1.0), FakeTrial("ccc", 0.5)
    _run(cb, finished, [epoch_result(1, 0.2), epoch_result(2, 0.3), epoch_result(3, 0.4, final=True)], "complete")
    _run(cb, stopped, [epoch_result(1, 0.1)], "complete")  # ASHA stop: completes without the final key
    _run(cb, failed, [epoch_result(1, 0.1)], "error")
    cb.on_experiment_end([])
    parent.end()
    client = MlflowClient(uri)
    assert client.get_run(parent.run_id).info.status == "FINISHED"
    runs = _children(parent)
    assert set(runs) == {"aaa", "bbb", "ccc"}
    assert {k: r.info.status for k, r in runs.items()} == {"aaa": "FINISHED", "bbb": "KILLED", "ccc": "FAILED"}
    run = runs["aaa"]
    assert run.data.tags["mlflow.parentRunId"] == parent.run_id
    assert run.data.tags[M.TAG_BUDGET] == "0.25" and run.data.tags[M.TAG_SHARING] == "jaccard"
    assert run.data.tags[M.TAG_ROLE] == M.ROLE_TRIAL and run.data.tags[M.TAG_PRESET] == "smoke"
    assert run.data.params["epochs"] == "3" and run.data.params["lr"] == "0.1"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc/digits")] == [1, 2, 3]
    assert "time_this_iter_s" not in run.data.metrics and "config/lr" not in run.data.metrics
    assert runs["bbb"].data.tags["bap.stopped_early"] == "true"
    # Batched: a handful of log_batch calls, not one per value.
    assert cb.stats["metrics_logged"] >= 5 * 4 and cb.stats["log_batch_calls"] <= 6


def test_restarts_and_resumes_never_duplicate_runs(uri):
    parent = SweepRun(uri, "exp", "sweep-2")
    parent.start({}, {})
    cb = _logger(parent)
    t = FakeTrial("ddd", 0.5)
    _run(cb, t, [epoch_result(1, 0.2)], None)
    t.num_failures = 1
    cb.on_trial_recover(0, [], t)  # Tune retries the trial from its checkpoint...
    _run(cb, t, [epoch_result(1, 0.2), epoch_result(2, 0.3)], None)  # ...which restarts it and re-reports epoch 1
    cb.flush()
    cb.close()  # the driver dies with the trial RUNNING

    parent2 = SweepRun(uri, "exp", "sweep-2")  # --resume
    assert parent2.start({}, {}) == parent.run_id and parent2.adopted
    cb2 = _logger(parent2)
    t2 = FakeTrial("ddd", 0.5, status="PENDING")
    cb2.on_step_begin(0, [t2])
    _run(cb2, t2, [epoch_result(2, 0.3), epoch_result(3, 0.4, final=True)], "complete")
    cb2.close()
    runs = parent.child_runs(view="all")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["bap.restarts"] == "1"
    steps = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, M.MEAN_VAL_ACC)]
    assert steps == [1, 2, 3]
    assert cb2.stats["runs_adopted"] == 1 and cb2.stats["runs_created"] == 0


def test_reconcile_closes_what_a_dead_driver_left_running(uri):
    parent = SweepRun(uri, "exp", "sweep-3")
    parent.start({}, {})
    cb = _logger(parent)
    done_in_tune = FakeTrial("eee", 0.25)
    stopped_in_tune = FakeTrial("fff", 0.5)
    unknown_to_tune = FakeTrial("ggg", 1.0)
    _run(cb, done_in_tune, [epoch_result(1, 0.2)], None)
    _run(cb, stopped_in_tune, [epoch_result(1, 0.2)], None)
    _run(cb, unknown_to_tune, [epoch_result(1, 0.2)], None)
    cb.close()  # killed: all three RUNNING in MLflow

    # Tune's saved state: eee finished (its last result is final), fff was stopped by ASHA, ggg never recorded.
    done_in_tune.status, done_in_tune.last_result = "TERMINATED", epoch_result(3, 0.5, final=True)
    stopped_in_tune.status, stopped_in_tune.last_result = "TERMINATED", epoch_result(2, 0.2)
    cb2 = _logger(parent)
    cb2.on_step_begin(0, [done_in_tune, stopped_in_tune])
    cb2.close()
    active = _children(parent)
    assert {k: r.info.status for k, r in active.items()} == {"eee": "FINISHED", "fff": "KILLED"}
    assert active["eee"].data.metrics[M.PRUNED_AGREEMENT] == 1.0
    deleted = [r for r in parent.child_runs(view="deleted_only")]
    assert [(r.data.tags[M.TAG_TRIAL_ID], r.info.status) for r in deleted] == [("ggg", "KILLED")]
    assert "bap.orphaned" in deleted[0].data.tags
    assert cb2.stats == {**cb2.stats, "runs_closed_on_reconcile": 2, "orphans_closed": 1, "orphans_adopted": 0}
    assert set(ended_trials(parent.child_runs())) == {"eee", "fff"}
    assert M.PRUNED_AGREEMENT not in ended_trials(parent.child_runs())["fff"]


def test_artifacts_logged_from_the_trial_folder(uri, tmp_path):
    from sweeps.tracking import artifact_location

    train = tmp_path / "trial_x" / "train"
    (train / "pruned").mkdir(parents=True)
    (train / "metrics.json").write_text("{}")
    (train / "pruned" / "channels.json").write_text("{}")
    parent = SweepRun(uri, "exp", "sweep-4")
    parent.start({}, {})
    cb = _logger(parent, storage_path=str(tmp_path))
    t = FakeTrial("hhh", 0.5)
    t.path = str(tmp_path / "trial_x")
    _run(cb, t, [epoch_result(1, 0.3, final=True)], "complete")
    cb.close()
    (run,) = parent.child_runs()
    names = {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)}
    assert names == {"metrics.json", "pruned"}
    assert MlflowClient(uri).get_experiment(parent.experiment_id).artifact_location == artifact_location(uri, "exp")


def test_numeric_metrics_filters_tune_bookkeeping():
    out = numeric_metrics({"epoch": 1.0, "done": True, "pid": 3, "val_acc/a": 0.5, "config/lr": 0.1, "x": "s"})
    assert out == {"epoch": 1.0, "val_acc/a": 0.5}


def test_new_trial_takes_over_the_run_of_an_unrecorded_trial(uri):
    parent = SweepRun(uri, "exp", "sweep-5")
    parent.start({}, {})
    cb = _logger(parent)
    lost = FakeTrial("old", 0.5)
    lost.config.update(optuna_study="sweep-5/budget=0.5", optuna_trial=3)
    _run(cb, lost, [epoch_result(1, 0.2), epoch_result(2, 0.3)], None)
    cb.close()  # killed before Tune saved a state that knows "old"

    cb2 = _logger(parent)
    cb2.on_step_begin(0, [])
    new = FakeTrial("new", 0.5)
    new.config.update(optuna_study="sweep-5/budget=0.5", optuna_trial=3, resume_trial="old")
    _run(cb2, new, [epoch_result(2, 0.3), epoch_result(3, 0.4, final=True)], "complete")
    cb2.close()
    (run,) = parent.child_runs(view="all")
    assert run.data.tags[M.TAG_TRIAL_ID] == "new" and run.data.tags["bap.previous_trial_id"] == "old"
    assert run.info.status == "FINISHED" and run.info.lifecycle_stage == "active"
    steps = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, M.MEAN_VAL_ACC)]
    assert steps == [1, 2, 3]
    assert cb2.stats["orphans_adopted"] == 1 and cb2.stats["orphans_closed"] == 0


def test_two_sweeps_creating_a_new_sqlite_store_at_once_both_succeed(tmp_path):
    """Two drivers starting within a second against a store that does not exist yet: one creates the schema, the
    other waits for it (without the lock, MLflow's migration failed in one of them)."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path}/new.db"
    code = ("import sys; from sweeps.tracking import SweepRun; r = SweepRun(sys.argv[1], 'exp', sys.argv[2]); "
            "r.start({}, {}); r.end(); print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", code, uri, f"sweep-{i}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "exp"]
    parents = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags[M.TAG_SWEEP_ID] for r in parents) == ["sweep-0", "sweep-1"]


def test_trial_run_names_say_what_differs_and_stay_unique():
    assert trial_run_name({"budget": 0.5, "sharing": "jaccard", "sharing_weight": 0.3}, {}) == "β=0.50 jaccard w=0.3"
    assert trial_run_name({"budget": 0.25}, {"sharing": "none", "sharing_weight": 5.0}) == "β=0.25 none"
    assert trial_run_name({"budget": 1.0}, {"sharing": "union", "sharing_weight": 5.0}) == "β=1.00 union w=5"
    assert trial_run_name({}, {}) == ""
    assert unique_name("β=0.50 union w=5", {"β=0.50 union w=5", "β=0.50 union w=5 #2"}) == "β=0.50 union w=5 #3"


def test_runs_named_at_creation_with_headline_metrics_first_and_a_training_experiment(uri):
    parent = SweepRun(uri, "named", "sweep-names")
    parent.start({"preset": "smoke"}, {})
    cb = _logger(parent)
    twins = FakeTrial("t1", 0.5), FakeTrial("t2", 0.5)  # sampled alike: the second gets "#2"
    for trial in twins:
        result = {**epoch_result(1, 0.3, final=True), M.FEASIBLE_MEAN_VAL_ACC: 0.29, M.UNION_PARAMS_RATIO: 0.6,
                  M.UNION_MACS_RATIO: 0.7}
        _run(cb, trial, [result], "complete")
    cb.on_experiment_end([])
    runs = _children(parent)
    assert sorted(r.info.run_name for r in runs.values()) == ["β=0.50 jaccard", "β=0.50 jaccard #2"]
    metrics = runs["t1"].data.metrics
    assert metrics["_acc"] == 0.29 and metrics["_params_ratio"] == 0.6 and metrics["_macs_ratio"] == 0.7
    assert sorted(metrics)[:3] == ["_acc", "_macs_ratio", "_params_ratio"]  # MLflow lists metrics by name
    experiment = MlflowClient(uri).get_experiment(parent.experiment_id)
    assert experiment.tags[M.TAG_EXPERIMENT_KIND] == M.EXPERIMENT_KIND_TRAINING


def test_parent_run_description_says_how_it_started_and_how_it_ended(uri):
    from sweeps.summary import SweepResult, TrialRow, sweep_command, sweep_note

    command = sweep_command(["sweeps/decathlon.py", "--optuna-storage", "postgresql://u:s3cret@db/optuna"])
    assert "s3cret" not in command and "db/optuna" in command
    parent = SweepRun(uri, "noted", "sweep-note")
    parent.start({}, {})
    parent.set_note(sweep_note(command, "grid", [0.25, 0.5], M.MEAN_VAL_ACC))
    note = MlflowClient(uri).get_run(parent.run_id).data.tags[M.TAG_NOTE]
    assert command in note and "budgets: 0.25, 0.5" in note
    rows = [TrialRow("a1", "FINISHED", 0.25, 0.8, 0.5, 0.6, 3.0, "union"),
            TrialRow("b2", "FINISHED", 0.5, 0.9, 0.7, 0.8, 3.0, "union")]
    result = SweepResult("sweep-note", True, False, rows, M.MEAN_VAL_ACC, "grid", ["digits"], "/tmp/x",
                         {"storage": "j", "studies": []}, {})
    parent.set_note(sweep_note(command, "grid", [0.25, 0.5], M.MEAN_VAL_ACC, result))
    note = MlflowClient(uri).get_run(parent.run_id).data.tags[M.TAG_NOTE]
    assert "**Best trial per budget**" in note and "| a1 | 0.25 | 0.8000 |" in note and "**Pareto set**" in note
