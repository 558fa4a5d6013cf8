"""The sweep on the rehearsal cluster, and the faults it must survive (issue: cluster).

Real processes throughout: Ray nodes in network namespaces, ``ray job submit``, PostgreSQL under Optuna, an MLflow
server. Assertions are about what the product promises (every trial finished once, on a worker, nothing lost,
nothing left running), never about how fast Ray or the OS notice something; waits have generous deadlines.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from bap import metrics as M
from cluster import processes
from cluster.rehearse import Rehearsal, trial_nodes, trial_results
from tests.cluster.conftest import LONG_TRIALS, trial_runs

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

SYSTEM_WORKERS = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::JobSupervisor",
                  "ray::_StatsActor", "ray::_QueueActor")


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    assert processes.wait_for(condition, timeout, 1.0), f"gave up waiting ({timeout:g} s) for: {what}"


def results(rehearsal: Rehearsal, sweep: str) -> dict[str, list[dict]]:
    return trial_results(rehearsal.storage_path, sweep)


def optuna_trials(rehearsal: Rehearsal, sweep: str) -> list:
    import optuna

    storage = optuna.storages.RDBStorage(rehearsal.services.optuna_storage)
    trials = []
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name.startswith(sweep + "/"):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            trials.extend(study.get_trials(deepcopy=False))
    return trials


def trial_actor_pids(rehearsal: Rehearsal) -> set[int]:
    """Ray worker processes running a trial (not Ray's own agents or idle workers) on the worker nodes."""
    pids = set()
    for index in range(1, len(rehearsal.nodes)):
        for pid in rehearsal.node_pids(index):
            title = processes.cmdline(pid)
            if title.startswith("ray::") and not title.startswith(SYSTEM_WORKERS):
                pids.add(pid)
    return pids


def assert_one_finished_run_per_trial(rehearsal: Rehearsal, sweep: str, trials: int) -> list:
    runs = trial_runs(rehearsal, sweep)
    statuses = sorted(run.info.status for run in runs)
    assert statuses == ["FINISHED"] * trials, f"{sweep}: MLflow child runs {statuses}"
    optuna_keys = [(run.data.tags.get(M.TAG_OPTUNA_STUDY), run.data.tags.get(M.TAG_OPTUNA_TRIAL)) for run in runs]
    assert len(set(optuna_keys)) == trials, f"{sweep}: runs share an Optuna trial: {optuna_keys}"
    return runs


def test_sweep_runs_on_the_worker_nodes(rehearsal: Rehearsal, say: Callable[[str], None]) -> None:
    sweep = "plain"
    began = time.monotonic()
    rehearsal.submit(rehearsal.sweep_command(sweep), sweep)
    assert rehearsal.wait_job(sweep) == "SUCCEEDED", rehearsal.job_logs(sweep)[-3000:]
    nodes = trial_nodes(rehearsal.storage_path, sweep)
    say(f"smoke sweep by ray job submit: {time.monotonic() - began:.0f} s; trial -> node: "
        + ", ".join(f"{t} {'/'.join(a)}" for t, a in sorted(nodes.items())))
    assert len(nodes) == 4, nodes
    if rehearsal.network:  # one address per node (side by side on 127.0.0.1, Tune reports the machine's address)
        workers = {node.address for node in rehearsal.nodes[1:]}
        assert {a for addresses in nodes.values() for a in addresses} == workers, nodes
    runs = assert_one_finished_run_per_trial(rehearsal, sweep, 4)
    assert {run.data.tags[M.TAG_TRIAL_ID]: run.data.tags.get(M.TAG_NODES) for run in runs} == \
        {trial: ",".join(addresses) for trial, addresses in nodes.items()}, "MLflow's bap.nodes tags"
    states = sorted(t.state.name for t in optuna_trials(rehearsal, sweep))
    assert states == ["COMPLETE"] * 4, states


def test_tracking_server_unreachable_fails_before_any_trial(rehearsal: Rehearsal, say: Callable[[str], None]) -> None:
    sweep = "no-tracking"
    dead = f"http://{rehearsal.services.state.host}:{processes.free_port(rehearsal.services.state.host)}"
    command = [arg if arg != rehearsal.services.tracking_uri else dead for arg in rehearsal.sweep_command(sweep)]
    rehearsal.submit(command, sweep)
    assert rehearsal.wait_job(sweep, timeout=300) == "FAILED"
    logs = rehearsal.job_logs(sweep)
    assert dead in logs and "Traceback" not in logs, logs[-3000:]
    assert not results(rehearsal, sweep), "a trial started although the tracking server was unreachable"
    error = next((line.strip() for line in logs.splitlines() if line.startswith("error:") and dead in line), None)
    assert error is not None, logs[-3000:]
    say(f"tracking server unreachable at start: {error[:240]}")


def test_worker_node_killed_mid_trial(rehearsal: Rehearsal, say: Callable[[str], None]) -> None:
    sweep = "node-killed"
    victim = 2
    address = rehearsal.nodes[victim].address
    rehearsal.submit(rehearsal.sweep_command(sweep, [*LONG_TRIALS, "--max-failures", "3"]), sweep)

    def caught_mid_trial() -> bool:  # a trial on the victim has a checkpoint behind it and epochs ahead
        return any(records[-1][M.TUNE_NODE_IP] == address and 2 <= records[-1][M.EPOCH] < 7
                   for records in results(rehearsal, sweep).values())

    until(caught_mid_trial, 300, f"a trial two epochs in on {address}")
    lost = rehearsal.kill_node(victim)
    until(lambda: not any(processes.alive(pid) for pid in lost), 120, "every process of the killed node to exit")
    assert rehearsal.wait_job(sweep) == "SUCCEEDED", rehearsal.job_logs(sweep)[-3000:]
    runs = assert_one_finished_run_per_trial(rehearsal, sweep, 4)
    moved = {tid: recs for tid, recs in results(rehearsal, sweep).items()
             if [r[M.TUNE_NODE_IP] for r in recs].count(address) and recs[-1][M.TUNE_NODE_IP] != address}
    assert moved, "no trial moved off the killed node"
    for records in moved.values():
        assert records[-1][M.RESUMED_FROM_EPOCH] >= 1, "the moved trial started over instead of resuming"
    assert any(int(run.data.tags.get(M.TAG_RESTARTS, 0)) >= 1 for run in runs)
    tagged = {run.data.tags[M.TAG_TRIAL_ID]: run.data.tags.get(M.TAG_NODES, "") for run in runs}
    for tid, records in moved.items():
        assert tagged[tid] == ",".join(dict.fromkeys(r[M.TUNE_NODE_IP] for r in records)), tagged
    for tid, records in moved.items():
        say(f"worker node {address} killed: trial {tid} ran on "
            f"{' -> '.join(dict.fromkeys(r[M.TUNE_NODE_IP] for r in records))}, resumed after epoch "
            f"{records[-1][M.RESUMED_FROM_EPOCH]}; {len(lost)} processes of the node gone; 4 runs FINISHED")
    rehearsal.start_node(victim)


def test_driver_killed_after_a_trial_completes_then_resumed(rehearsal: Rehearsal,
                                                            say: Callable[[str], None]) -> None:
    sweep = "driver-killed"
    rehearsal.submit(rehearsal.sweep_command(sweep, LONG_TRIALS), sweep)
    until(lambda: any(run.info.status == "FINISHED" for run in trial_runs(rehearsal, sweep)), 300,
          "the first trial to complete")
    actors = trial_actor_pids(rehearsal)
    pid = rehearsal.driver_pid(sweep)
    assert pid is not None
    finished_before = sum(run.info.status == "FINISHED" for run in trial_runs(rehearsal, sweep))
    os.kill(pid, signal.SIGKILL)
    assert rehearsal.wait_job(sweep, timeout=120) == "FAILED"
    until(lambda: not any(processes.alive(p) for p in actors), 120, "the dead driver's trial actors to exit")

    rehearsal.submit(rehearsal.sweep_command(sweep, [*LONG_TRIALS, "--resume"]), sweep + "-resumed")
    assert rehearsal.wait_job(sweep + "-resumed") == "SUCCEEDED", rehearsal.job_logs(sweep + "-resumed")[-3000:]
    assert_one_finished_run_per_trial(rehearsal, sweep, 4)
    states = sorted(t.state.name for t in optuna_trials(rehearsal, sweep))
    assert states == ["COMPLETE"] * 4, f"Optuna on PostgreSQL: {states}"
    say(f"driver kill -9 after {finished_before} trial(s) finished ({len(actors)} trial actors exited with it); "
        "resubmitted with --resume: 4 MLflow runs FINISHED, 4 Optuna trials COMPLETE")


def test_tracking_server_outage_mid_sweep_loses_no_metric(rehearsal: Rehearsal, say: Callable[[str], None]) -> None:
    sweep = "tracking-outage"
    rehearsal.submit(rehearsal.sweep_command(sweep, LONG_TRIALS), sweep)
    until(lambda: any(run.data.metrics for run in trial_runs(rehearsal, sweep)), 300, "the first logged metric")
    rehearsal.services.stop_mlflow()
    time.sleep(30)  # the outage itself (the scenario), not a wait for something to happen
    rehearsal.services.start_mlflow()
    assert rehearsal.wait_job(sweep) == "SUCCEEDED", rehearsal.job_logs(sweep)[-3000:]
    runs = assert_one_finished_run_per_trial(rehearsal, sweep, 4)
    from tests.cluster.conftest import mlflow_client

    client = mlflow_client(rehearsal)
    reported = results(rehearsal, sweep)
    for run in runs:
        epochs = sorted(int(r[M.EPOCH]) for r in reported[run.data.tags[M.TAG_TRIAL_ID]])
        logged = sorted(int(m.step) for m in client.get_metric_history(run.info.run_id, M.MEAN_VAL_ACC))
        assert logged == epochs, f"trial {run.data.tags[M.TAG_TRIAL_ID]}: MLflow has epochs {logged} of {epochs}"
    say(f"MLflow server down 30 s mid-sweep: {sum(len(r) for r in reported.values())} reported epochs, all in MLflow")


def test_two_sweeps_at_once_on_a_new_database_do_not_mix(rehearsal: Rehearsal, say: Callable[[str], None]) -> None:
    storage = rehearsal.services.postgres.create_database("optuna_pair")  # new: both sweeps create its tables
    sweeps = ("pair-a", "pair-b")
    for sweep in sweeps:
        command = [storage if arg == rehearsal.services.optuna_storage else arg
                   for arg in rehearsal.sweep_command(sweep)]
        rehearsal.submit(command, sweep)
    for sweep in sweeps:
        assert rehearsal.wait_job(sweep) == "SUCCEEDED", rehearsal.job_logs(sweep)[-3000:]
    parents = {}
    for sweep in sweeps:
        runs = assert_one_finished_run_per_trial(rehearsal, sweep, 4)
        parents[sweep] = {run.data.tags[M.TAG_PARENT_RUN] for run in runs}
        assert len(parents[sweep]) == 1, f"{sweep}: children under several parents {parents[sweep]}"
        assert len(results(rehearsal, sweep)) == 4, f"{sweep}: trial folders"
    assert parents["pair-a"] != parents["pair-b"]
    import optuna

    names = sorted(s.study_name for s in optuna.get_all_study_summaries(optuna.storages.RDBStorage(storage)))
    for sweep in sweeps:
        studies = [n for n in names if n.startswith(sweep + "/")]
        assert len(studies) == 4, names
        trials = [len(optuna.load_study(study_name=n, storage=storage).trials) for n in studies]
        assert trials == [1, 1, 1, 1], f"{sweep}: Optuna trials per study {trials}"
    say("two sweeps submitted at once on a new Optuna database: 4 + 4 runs, each under its own parent, "
        "4 + 4 studies of one trial")


def test_down_leaves_nothing_running(rehearsal: Rehearsal) -> None:
    started = {pid for index in range(len(rehearsal.nodes)) for pid in rehearsal.node_pids(index)}
    started |= set(rehearsal.services.pids())
    assert started
    rehearsal.down()
    until(lambda: not any(processes.alive(pid) for pid in started), 60, "every rehearsal process to exit")
    root = str(rehearsal.root)
    left = [pid for pid in processes.all_pids() if root in processes.cmdline(pid)]
    assert not left, f"still running: {[processes.cmdline(pid) for pid in left]}"
    from tests.cluster.conftest import HOME_STATE, _home_ray_state

    assert _home_ray_state() == HOME_STATE["ray"], "the rehearsal wrote into ~/.ray (its token is its own)"
    if rehearsal.network:
        names = os.popen("ip netns list").read()
        assert not any(rehearsal.network.namespace(i) in names for i in range(len(rehearsal.nodes))), names
