"""End-to-end sweeps with the real stack: local Ray, SQLite MLflow, an Optuna journal file, the real bap.train.

Each test runs ``python sweeps/decathlon.py`` as a subprocess (as a user would), then reads back what MLflow, Optuna
and Tune recorded. All are marked slow (about 1 minute each on 2 CPU cores).
"""

from __future__ import annotations

import json
import os
import signal
import time

import optuna
import psutil
import pytest
from mlflow import MlflowClient

from bap import metrics as M
from bap.metrics import RESUMED_FROM_EPOCH
from sweeps.search import make_storage
from tests.sweeps.driver import SweepRun, new_run, run_driver, start_driver, wait_gone

pytestmark = pytest.mark.slow
GIB = 1024**3


def mlflow_runs(run: SweepRun, view: str = "active_only"):
    from mlflow.entities import ViewType

    client = MlflowClient(run.tracking_uri)
    exp = client.get_experiment_by_name(run.experiment)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{M.TAG_SWEEP_ID}` = '{run.name}'",
                              run_view_type=ViewType.from_string(view), max_results=1000)
    parents = [r for r in runs if r.data.tags.get(M.TAG_ROLE) == M.ROLE_SWEEP]
    children = [r for r in runs if r.data.tags.get(M.TAG_ROLE) == M.ROLE_TRIAL]
    return client, parents, children


def optuna_trials(run: SweepRun) -> list[optuna.trial.FrozenTrial]:
    storage = make_storage(str(run.optuna_storage))
    out = []
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name == run.name or summary.study_name.startswith(run.name + "/"):
            out.extend(optuna.load_study(study_name=summary.study_name, storage=storage).get_trials())
    return out


def check_consistent(run: SweepRun, expected_trials: int) -> dict:
    """MLflow: 1 parent + one ended child per trial; Optuna: the same trials, none RUNNING."""
    client, parents, children = mlflow_runs(run)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    ids = [c.data.tags[M.TAG_TRIAL_ID] for c in children]
    assert len(ids) == len(set(ids)) == expected_trials, ids
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    statuses = {c.data.tags[M.TAG_TRIAL_ID]: c.info.status for c in children}
    assert set(statuses.values()) <= {"FINISHED", "KILLED"}, statuses
    trials = optuna_trials(run)
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    told = {t.user_attrs.get(M.ATTR_TUNE_TRIAL): t.state.name for t in trials if t.state.name in ("COMPLETE", "PRUNED")}
    assert told == {tid: {"FINISHED": "COMPLETE", "KILLED": "PRUNED"}[s] for tid, s in statuses.items()}
    return {"client": client, "parent": parents[0], "children": {c.data.tags[M.TAG_TRIAL_ID]: c for c in children},
            "optuna": trials}


def test_smoke_sweep_records_everything(smoke_sweep):
    run = smoke_sweep
    assert run.returncode == 0
    found = check_consistent(run, expected_trials=4)
    client, children = found["client"], found["children"]
    budgets = sorted(float(c.data.tags[M.TAG_BUDGET]) for c in children.values())
    assert budgets == [0.25, 0.5, 0.75, 1.0]
    domains = ("digits", "faces", "textures", "glyphs", "signs")
    for child in children.values():
        metrics = child.data.metrics
        for key in (M.EPOCH, M.MEAN_VAL_ACC, M.UNION_MACS_RATIO, M.UNION_PARAMS_RATIO, M.TRAIN_LOSS):
            assert key in metrics, key
        for d in domains:
            for name in (M.VAL_ACC, M.USAGE, M.PARAMS, M.MACS, M.DUAL):
                assert M.domain_metric(name, d) in metrics
        # the pruned model was timed at the end, with the trial's one thread, every domain and batch size
        for batch in M.LATENCY_BATCHES:
            for kind in (M.LATENCY_MS, M.LATENCY_RATIO):
                name = M.latency_metric("cpu", batch, kind)
                assert metrics[name] > 0 and all(metrics[M.domain_metric(name, d)] > 0 for d in domains)
        assert metrics[M.LATENCY_THREADS] == 1 and metrics[M.LATENCY_NEIGHBOURS] >= 0
        history = client.get_metric_history(child.info.run_id, M.domain_metric(M.VAL_ACC, "digits"))
        steps = [m.step for m in history]
        assert steps == list(range(1, len(steps) + 1))  # one value per epoch, none twice
        assert child.data.params["width"] == "0.125" and "lr" in child.data.params
        # Grid mode ranks each trial only against its own budget's (one ASHA bracket per budget), so a budget's only
        # trial is never stopped: every budget ends with a pruned model, however far ahead a cheaper trial was.
        assert child.info.status == "FINISHED", child.data.tags[M.TAG_BUDGET]
        assert metrics[M.EPOCH] == 3 and M.PRUNED_AGREEMENT in metrics
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"metrics.json", "pruned", "trial_config.json"} <= artifacts
        local = client.download_artifacts(child.info.run_id, "metrics.json")
        assert json.load(open(local))[M.BUDGET] == float(child.data.tags[M.TAG_BUDGET])
    # Optuna was told, epoch by epoch, the budget-feasible accuracy MLflow holds (not the plain one).
    for trial in found["optuna"]:
        child = children[trial.user_attrs[M.ATTR_TUNE_TRIAL]]
        feasible = {m.step: m.value for m in client.get_metric_history(child.info.run_id, M.FEASIBLE_MEAN_VAL_ACC)}
        assert trial.intermediate_values and trial.intermediate_values == {
            step: feasible[step] for step in trial.intermediate_values}
        assert trial.value == child.data.metrics[M.MEAN_VAL_ACC] == child.data.metrics[M.FEASIBLE_MEAN_VAL_ACC]
    # Tune's side and the summary the user sees.
    assert (run.experiment_dir / "sweep.yaml").is_file()
    trial_dirs = sorted(run.experiment_dir.glob("trial_*"))
    assert len(trial_dirs) == 4
    for trial_dir in trial_dirs:  # Tune's per-trial logs, without TensorBoard files unless --tensorboard
        assert (trial_dir / "result.json").is_file() and (trial_dir / "progress.csv").is_file()
        assert not list(trial_dir.glob("events.out.tfevents*"))
    assert "Best trial per budget" in run.output
    assert "python -m analysis.ui --tracking-uri" in run.output and "workflowType=machine_learning" in run.output
    assert "val acc" in run.output  # the progress table carries our metric columns


def test_smoke_sweep_peak_memory(smoke_sweep):
    run = smoke_sweep
    print(f"\nsmoke sweep: {run.wall_s:.1f} s wall, peak PSS {run.peak_pss_bytes / GIB:.2f} GiB, "
          f"peak RSS {run.peak_rss_bytes / GIB:.2f} GiB, up to {run.peak_processes} processes")
    assert 0 < run.peak_pss_bytes < 6 * GIB
    assert run.peak_rss_bytes < 6 * GIB


def test_asha_stops_a_dominated_trial_early(tmp_path, mini_data):
    """Four trials, one budget, run one at a time: those with a learning rate too small to learn anything fall
    behind at the first rung and are stopped; trials at their last epoch are never stopped."""
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  lr: {choice: [0.2, 1.0e-6]}\n  switch_lr: {choice: [0.01, 1.0e-6]}\n"
                     "  sharing: jaccard\ntrain:\n  steps_per_epoch: 12\n")
    run = new_run(tmp_path, "asha")
    run_driver(run, "--preset", "smoke", "--config", str(space), "--budgets", "0.5", "--num-samples", "4",
               "--max-concurrent", "1", "--sampler", "random", "--seed", "3")
    assert run.returncode == 0, run.output[-5000:]
    found = check_consistent(run, expected_trials=4)
    stopped = {tid: c for tid, c in found["children"].items() if c.info.status == "KILLED"}
    assert stopped, "ASHA stopped no trial"
    client = found["client"]
    for child in stopped.values():
        assert child.data.metrics[M.EPOCH] < 3
        assert child.data.tags.get("bap.stopped_early") == "true"
    pruned = [t for t in found["optuna"] if t.state == optuna.trial.TrialState.PRUNED]
    assert {t.user_attrs[M.ATTR_TUNE_TRIAL] for t in pruned} == set(stopped)
    # Each stopped trial was behind some trial at its rung (same budget here), in what ASHA ranks: the accuracy of
    # the network it would deliver then, its budget enforced.
    first = {tid: client.get_metric_history(c.info.run_id, M.FEASIBLE_MEAN_VAL_ACC)[0].value
             for tid, c in found["children"].items()}
    for tid in stopped:
        assert any(first[o] > first[tid] for o in first if o != tid)


def test_a_pareto_sweep_can_minimise_the_measured_latency(tmp_path, mini_data):
    """--pareto-costs macs,latency_b64: the multi-objective study's second cost is the CPU latency ratio each trial
    measured on its pruned model, exactly what MLflow holds for the trial."""
    run = new_run(tmp_path, "latency")
    run_driver(run, "--preset", "smoke", "--mode", "pareto", "--pareto-costs", "macs,latency_b64", "--num-samples",
               "3", "--no-asha", "--epochs", "2", "--domains", "digits,signs")
    assert run.returncode == 0, run.output[-5000:]
    found = check_consistent(run, expected_trials=3)
    study = optuna.load_study(study_name=run.name, storage=make_storage(str(run.optuna_storage)))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    complete = [t for t in found["optuna"] if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    for trial in complete:
        metrics = found["children"][trial.user_attrs[M.ATTR_TUNE_TRIAL]].data.metrics
        assert trial.values == [metrics[M.FEASIBLE_MEAN_VAL_ACC], metrics[M.UNION_MACS_RATIO],
                                metrics[M.latency_metric("cpu", 64, M.LATENCY_RATIO)]]


def test_injected_fault_is_retried_from_its_checkpoint(tmp_path, mini_data):
    run = new_run(tmp_path, "fault")
    run_driver(run, "--preset", "smoke", "--budgets", "0.5,1.0", "--no-asha", "--max-failures", "2",
               env={"BAP_SWEEP_INJECT_FAULT": "epoch=2,count=1"})
    assert run.returncode == 0, run.output[-5000:]
    assert "injected fault at epoch 2" in run.output
    found = check_consistent(run, expected_trials=2)
    client, children = found["client"], found["children"]
    retried = [c for c in children.values() if c.data.tags.get("bap.restarts") == "1"]
    assert len(retried) == 1
    child = retried[0]
    assert child.info.status == "FINISHED" and child.data.metrics[M.EPOCH] == 3
    assert [m.step for m in client.get_metric_history(child.info.run_id, M.MEAN_VAL_ACC)] == [1, 2, 3]
    resumed = {m.step: m.value for m in client.get_metric_history(child.info.run_id, RESUMED_FROM_EPOCH)}
    assert resumed == {1: 0.0, 2: 1.0, 3: 1.0}  # the retry continued after epoch 1's checkpoint, not from scratch
    other = [c for c in children.values() if c is not child][0]
    assert "bap.restarts" not in other.data.tags


def _finished_trials(run: SweepRun) -> dict[str, float]:
    out = {}
    for p in run.experiment_dir.glob("trial_*/train/metrics.json"):
        out[p.parent.parent.name] = p.stat().st_mtime
    return out


def _checkpointed_unfinished(run: SweepRun) -> list[str]:
    return [d.name for d in run.experiment_dir.glob("trial_*")
            if any(d.glob("checkpoint_*")) and not (d / "train" / "metrics.json").exists()]


@pytest.mark.parametrize("moment", ["mid_trial", "after_completion"])
def test_resume_after_driver_kill(tmp_path, mini_data, moment):
    """kill -9 the driver (mid_trial: trials finished and others mid-way; after_completion: 1.5 s after a trial
    completed, the instant that used to crash OptunaSearch); --resume completes the sweep with no duplicate or
    dangling MLflow run, no RUNNING Optuna trial, finished trials not redone, interrupted ones resumed."""
    run = new_run(tmp_path, "resume")
    args = ("--preset", "smoke", "--num-samples", "2", "--no-asha")  # 8 trials
    proc, sampler = start_driver(run, *args)
    deadline = time.monotonic() + 300
    first_done = None
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(_finished_trials(run))
        if moment == "mid_trial" and done >= 2 and _checkpointed_unfinished(run):
            break
        if moment == "after_completion" and done >= 1:
            first_done = first_done or time.monotonic()
            if time.monotonic() - first_done >= 1.5:
                break
        time.sleep(0.1)
    assert proc.poll() is None, "the sweep ended before it could be interrupted:\n" + proc.stdout.read()[-3000:]
    finished_before = _finished_trials(run)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    sampler.stop()
    old = sampler.pids - {proc.pid}
    agents = {p for p in old if _is_ray_agent(p)}  # they notice the dead raylet after ~1-2 minutes
    leftovers = wait_gone(old - agents, timeout=30)
    assert not leftovers, f"processes of the killed sweep still alive: {leftovers}"
    _, _, children_before = mlflow_runs(run)
    assert any(c.info.status == "RUNNING" for c in children_before)  # what the dead driver left open

    run_driver(run, *args, "--resume")
    assert run.returncode == 0, run.output[-5000:]
    found = check_consistent(run, expected_trials=8)
    # Finished trials were not trained again.
    for trial_dir, mtime in finished_before.items():
        assert (run.experiment_dir / trial_dir / "train" / "metrics.json").stat().st_mtime == mtime, trial_dir
    # Every child's epochs were logged once; interrupted trials resumed from a checkpoint, not from epoch 0.
    client = found["client"]
    resumed_any = False
    for child in found["children"].values():
        steps = [m.step for m in client.get_metric_history(child.info.run_id, M.MEAN_VAL_ACC)]
        assert steps == [1, 2, 3], (child.data.tags[M.TAG_TRIAL_ID], steps)  # every epoch once, none lost
        resumed = [m.value for m in client.get_metric_history(child.info.run_id, RESUMED_FROM_EPOCH)]
        resumed_any |= any(v > 0 for v in resumed)
        assert child.info.status == "FINISHED"
    if moment == "mid_trial":
        assert resumed_any, "no interrupted trial resumed from its checkpoint"
    print(f"\nresume ({moment}): " + next((line for line in run.output.splitlines() if line.startswith("Resume:")),
                                         "no MLflow run needed reconciling"))
    assert not wait_gone(agents, timeout=120), "Ray agents of the killed driver never exited"


def _is_ray_agent(pid: int) -> bool:
    try:
        return "Agent" in psutil.Process(pid).name() or "Agent" in " ".join(psutil.Process(pid).cmdline())
    except psutil.NoSuchProcess:
        return False
