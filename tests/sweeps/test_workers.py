"""Trial workers prestarted by the local Ray, torch already imported (:mod:`sweeps.workers`): when the sweep uses
them, its trial actors land on them; otherwise trials start their own workers, as before."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sweeps import workers
from tests.sweeps.entry import TrainConfig

REPO = Path(__file__).resolve().parents[2]
ENTRY = "tests.sweeps.workers_entry"  # the training entry point of the sweeps below


# ------------------------------------------------------------------------------------------------------------------
def test_worth_warming_when_most_prestarted_workers_run_trials():
    assert workers.worth_warming(2, max_concurrent=2, cpus_per_trial=1)
    assert workers.worth_warming(4, max_concurrent=2, cpus_per_trial=1)  # half of them
    assert not workers.worth_warming(8, max_concurrent=2, cpus_per_trial=1)
    assert workers.worth_warming(16, max_concurrent=8, cpus_per_trial=2)  # 8 trials on 16 CPUs
    assert not workers.worth_warming(16, max_concurrent=8, cpus_per_trial=4)  # only 4 fit at once
    assert not workers.worth_warming(3, max_concurrent=1, cpus_per_trial=1)
    assert workers.worth_warming(3, max_concurrent=10, cpus_per_trial=0.3)  # 10 fit (float floor would say 9)
    assert not workers.worth_warming(2, max_concurrent=2, cpus_per_trial=4)  # no trial fits at all
    # GPU trials: as many at once as the GPUs hold; unknown GPUs (Ray detects them later): no warming
    assert not workers.worth_warming(8, max_concurrent=8, cpus_per_trial=1, gpus_per_trial=0.5, num_gpus=1)
    assert workers.worth_warming(8, max_concurrent=8, cpus_per_trial=1, gpus_per_trial=0.25, num_gpus=1)
    assert not workers.worth_warming(2, max_concurrent=2, cpus_per_trial=1, gpus_per_trial=0.5)


def test_ray_cpus_is_the_given_count_or_rays_own():
    assert workers.ray_cpus(3) == 3
    assert workers.ray_cpus(None) >= 1  # Ray's own count: checked against a running Ray in test_ray_compat


def test_local_ray_settings_prestart_warm_workers_only_when_asked():
    warm, cold = workers.local_ray_settings(True, 4), workers.local_ray_settings(False, 4)
    assert warm["prestart_worker_first_driver"] is True and "torch" in warm["preload_python_modules"]
    assert warm["num_workers_soft_limit"] == 4  # kept while Tune's placement groups reserve every CPU
    assert cold["prestart_worker_first_driver"] is False and "preload_python_modules" not in cold
    assert warm["worker_niceness"] == cold["worker_niceness"] == 0  # trials at the driver's priority


def test_worker_environment_sets_and_restores_tunes_actor_variables(monkeypatch):
    monkeypatch.delenv("PL_DISABLE_FORK", raising=False)
    with workers.worker_environment() as env:
        assert os.environ["PL_DISABLE_FORK"] == env["PL_DISABLE_FORK"] == "1"
    assert "PL_DISABLE_FORK" not in os.environ
    monkeypatch.setenv("PL_DISABLE_FORK", "0")
    with pytest.raises(RuntimeError), workers.worker_environment():
        assert os.environ["PL_DISABLE_FORK"] == "1"
        raise RuntimeError("the sweep failed")
    assert os.environ["PL_DISABLE_FORK"] == "0"


def test_trial_actors_inherit_only_inside_the_block():
    from ray.tune.execution import class_cache

    defaults, propagated = class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE
    assert defaults == workers.TUNE_ACTOR_ENV  # the Ray this project pins still sets what sweeps.workers expects
    with workers.worker_environment() as env, workers.trial_actors_inherit(env) as inherited:
        assert inherited
        assert not _actor_env_vars(class_cache)
    assert class_cache.DEFAULT_ENV_VARS is defaults and class_cache.ENV_VARS_TO_PROPAGATE is propagated
    assert _actor_env_vars(class_cache) == workers.TUNE_ACTOR_ENV
    with pytest.raises(RuntimeError), workers.worker_environment() as env, workers.trial_actors_inherit(env):
        raise RuntimeError("fit failed")
    assert class_cache.DEFAULT_ENV_VARS is defaults and class_cache.ENV_VARS_TO_PROPAGATE is propagated


def _actor_env_vars(class_cache: Any) -> dict[str, str]:
    """The environment variables Tune would give a trial actor now (a fresh cache registers the class anew)."""
    return (class_cache._ActorClassCache().get(TrainConfig)._default_options.get("runtime_env") or {}).get(
        "env_vars") or {}


def test_trial_actors_keep_tunes_environment_unless_the_workers_have_it(monkeypatch):
    from ray.tune.execution import class_cache

    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    with workers.worker_environment() as env:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "refreshed")  # Tune would propagate it; the workers lack it
        with workers.trial_actors_inherit(env) as inherited:
            assert not inherited
            assert class_cache.DEFAULT_ENV_VARS == workers.TUNE_ACTOR_ENV
    with workers.trial_actors_inherit({"PL_DISABLE_FORK": "0"}) as inherited:  # not the value Tune sets
        assert not inherited
    monkeypatch.setattr(class_cache, "DEFAULT_ENV_VARS", {"PL_DISABLE_FORK": "1", "NEW_TUNE_VARIABLE": "x"})
    with workers.worker_environment() as env, workers.trial_actors_inherit(env) as inherited:
        assert not inherited


def _idle_workers(expected: int, timeout: float) -> set[int]:
    """Pids of this process's idle Ray workers, once ``expected`` of them run (or what runs at ``timeout``)."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        idle = {p.pid for p in psutil.Process().children(recursive=True) if p.name().startswith("ray::IDLE")}
        if len(idle) >= expected or time.monotonic() > deadline:
            return idle
        time.sleep(0.2)


@pytest.mark.slow
def test_prestarted_workers_outlive_placement_groups_that_reserve_every_cpu():
    """By default Ray keeps only as many idle workers as there are unreserved CPUs: once Tune's placement groups
    reserve them all it kills the prestarted workers (if idle for over a second, on its next check) and starts new
    ones for the trial actors. A sweep's trials often start seconds after Ray, so the settings must keep them."""
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    @ray.remote(num_cpus=1)
    class Trial:
        def pid(self) -> int:
            return os.getpid()

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _system_config=workers.local_ray_settings(True, 2))
    try:
        prestarted = _idle_workers(expected=2, timeout=120)  # they register, import torch, and idle
        assert len(prestarted) == 2
        groups = [placement_group([{"CPU": 1}]) for _ in range(2)]
        ray.get([g.ready() for g in groups])
        time.sleep(2)  # Ray's idle-worker check runs every 200 ms: give it every chance to kill them
        trials = [Trial.options(scheduling_strategy=PlacementGroupSchedulingStrategy(g)).remote() for g in groups]
        pids = set(ray.get([t.pid.remote() for t in trials]))
    finally:
        ray.shutdown()
    assert pids == prestarted, "the trial actors got new workers: the prestarted ones were killed"


@pytest.mark.slow
@pytest.mark.parametrize(("num_cpus", "max_concurrent", "warm"), [(2, 2, True), (3, 1, False)])
def test_sweep_trials_run_on_prestarted_workers_only_when_worth_it(tmp_path, monkeypatch, num_cpus, max_concurrent,
                                                                   warm):
    """The real driver as a subprocess (local Ray, MLflow on SQLite, Optuna journal), judged by what each trial
    observes in its worker. Warm: torch was already imported when the trial's entry point loaded (only a worker
    Ray prestarted with the preloaded modules has it), the actor has the default runtime environment and Tune's
    variable is inherited. Cold: nothing imported torch before the entry point, and Tune gave the actor its own
    runtime environment. Either way the workers are reused across trials, at the driver's priority."""
    from tests.sweeps.driver import new_run, run_driver  # here: trial workers import this module

    log = tmp_path / "workers.jsonl"
    config = tmp_path / "workers.yaml"
    config.write_text(json.dumps({
        "entrypoint": ENTRY, "budgets": [0.25, 0.5], "num_samples": 2, "num_cpus": num_cpus,
        "max_concurrent": max_concurrent, "asha": {"enabled": False}, "verbose": 0,
        "train": {"epochs": 1, "log": str(log)},
    }))
    monkeypatch.delenv("PL_DISABLE_FORK", raising=False)
    run = run_driver(new_run(tmp_path, "workers"), "--preset", "smoke", "--config", str(config), timeout=300,
                     env={"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)})
    assert run.returncode == 0, run.output[-6000:]
    summary = json.loads(next(tmp_path.glob("mlruns/**/summary.json")).read_text())
    assert summary["counts"] == {"FINISHED": 4}
    assert summary["warm_workers"] is warm
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(runs) == 4
    assert len({r["pid"] for r in runs}) <= max_concurrent  # actors are reused across trials
    for r in runs:
        assert r["pl_disable_fork"] == "1"  # Tune's variable reaches the trial either way
        assert r["niceness"] == 0  # as a Pool's worker (Ray's default would be 15)
        if warm:
            assert r["torch_before_entry"], "the trial's worker was not one Ray prestarted with torch imported"
            assert r["runtime_env"] == {}
        else:
            assert not r["torch_before_entry"]  # the control: nothing else imports torch before the entry point
            assert r["runtime_env"] == {"env_vars": {"PL_DISABLE_FORK": "1"}}
