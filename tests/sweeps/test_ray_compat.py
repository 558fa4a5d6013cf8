"""Canaries for :mod:`sweeps._ray_compat`, the one module that touches Ray, Tune and Optuna internals: each test
exercises one access on the installed versions (not only ``hasattr``), so an upgrade that moves it fails here.

* a sweep's own local Ray starts without the dashboard API server and the autoscaler monitor, still runs tasks, and
  leaves Ray as it was; Ray's CPU count and session folder are what Ray itself reports;
* in Ray's local-only mode a loopback node address stays loopback, and the Ray started in it runs on 127.0.0.1 in a
  session folder named after its driver's pid (every process listening on loopback only: ``test_local_ray.py``);
* inside a real Tune trial, the trial's storage is the sweep's storage folder; a restored tuner runs with the
  callbacks it is given (not the pickled ones);
* an Optuna trial is reached by its number, for reports, attributes and ``tell``.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os

import psutil
import pytest

from sweeps import _ray_compat

SKIPPED_SCRIPTS = ("dashboard/dashboard.py", "autoscaler/_private/monitor.py")


def _ray_service_scripts() -> set[str]:
    """Which of the skipped services run as children of this process."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        found.update(script for script in SKIPPED_SCRIPTS if script in cmdline)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("lean", [True, False], ids=["lean", "control"])
def test_local_ray_starts_without_api_server_and_monitor(lean):
    import ray
    from ray._private.node import Node

    before = {name: getattr(Node, name) for name in _ray_compat.SKIPPED_SERVICES}
    assert not ray.is_initialized()
    try:
        if lean:
            with _ray_compat.lean_head() as skipped:
                ray.init(address="local", include_dashboard=False, log_to_driver=False)  # Ray counts the CPUs
            assert skipped
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        running = _ray_service_scripts()
        assert _ray_compat.ray_cpus(None) == int(ray.cluster_resources()["CPU"])  # Ray's own count
        root = _ray_compat.ray_temp_root()
        assert root is not None and any(p.startswith("session_") for p in os.listdir(root))

        @ray.remote
        def pid() -> int:
            return os.getpid()

        assert ray.get(pid.remote()) != os.getpid()
    finally:
        ray.shutdown()
    assert {name: getattr(Node, name) for name in _ray_compat.SKIPPED_SERVICES} == before  # restored after init
    assert running == (set() if lean else set(SKIPPED_SCRIPTS))  # the control: without it, both run


def test_lean_head_leaves_a_ray_without_those_methods_alone():
    class OtherNode:
        def start_api_server(self, **kwargs):
            return "api"

    with _ray_compat.lean_head(OtherNode) as skipped:
        assert OtherNode().start_api_server() == "api"
    assert not skipped and not hasattr(OtherNode, "start_monitor")


def test_lean_head_restores_the_methods_on_error():
    class FakeNode:
        def start_api_server(self, **kwargs):
            return "api"

        def start_monitor(self):
            return "monitor"

    with pytest.raises(RuntimeError), _ray_compat.lean_head(FakeNode) as skipped:
        assert skipped and FakeNode().start_api_server(include_dashboard=False) is None
        assert FakeNode().start_monitor() is None
        raise RuntimeError("ray.init failed")
    assert FakeNode().start_api_server() == "api" and FakeNode().start_monitor() == "monitor"


def test_ray_temp_root_is_none_without_ray():
    import ray

    assert not ray.is_initialized() and _ray_compat.ray_temp_root() is None
    assert _ray_compat.ray_session_dir() is None


def test_loopback_only_keeps_a_loopback_node_address_and_restores_rays_mode():
    import ray
    from ray._private import ray_constants, services

    assert not ray.is_initialized()  # else Ray answers with the running node's address
    before = ray_constants.ENABLE_RAY_CLUSTER
    with _ray_compat.loopback_only() as init_kwargs:
        assert init_kwargs == {"_node_ip_address": "127.0.0.1"}
        assert ray_constants.ENABLE_RAY_CLUSTER is False
        # what ray.init does with _node_ip_address, and what the head's Node takes when none is given
        assert services.resolve_ip_for_localhost(init_kwargs["_node_ip_address"]) == "127.0.0.1"
        assert services.get_node_ip_address() == "127.0.0.1"
    assert ray_constants.ENABLE_RAY_CLUSTER is before
    with pytest.raises(RuntimeError), _ray_compat.loopback_only():
        raise RuntimeError("ray.init failed")
    assert ray_constants.ENABLE_RAY_CLUSTER is before


@pytest.mark.slow
def test_local_ray_in_loopback_only_runs_on_127_0_0_1_in_a_session_folder_named_after_the_driver():
    import ray

    with _ray_compat.loopback_only() as init_kwargs:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, **init_kwargs)
    try:
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
        session_dir = _ray_compat.ray_session_dir()
        assert fnmatch.fnmatch(session_dir, _ray_compat.session_dir_pattern(os.getpid()))
        assert os.path.dirname(session_dir) == _ray_compat.ray_temp_root()
        (gcs,) = [p for p in psutil.Process().children() if p.name() == "gcs_server"]
        listening = [c.laddr.ip for c in gcs.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all((getattr(a, "ipv4_mapped", None) or a).is_loopback
                                 for a in map(ipaddress.ip_address, listening)), listening
    finally:
        ray.shutdown()


# ------------------------------------------------------------------------------------------------------------------
# Ray Tune: a trial's storage, and a restored tuner with fresh callbacks
# ------------------------------------------------------------------------------------------------------------------
def _storage_trainable(config):
    from ray import tune

    storage = _ray_compat.trial_storage()
    tune.report({"trial_path": storage.trial_path, "local": storage.is_local, "working_dir": storage.working_dir,
                 "exists": storage.filesystem.get_file_info(storage.trial_path).type.name})


@pytest.mark.slow
def test_trial_storage_and_restore_tuner(tmp_path):
    import ray
    from ray import tune

    class Seen(tune.Callback):
        def __init__(self):
            self.events = []

        def setup(self, **info):
            self.events.append("setup")

        def on_experiment_end(self, trials, **info):
            self.events.append("end")

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        run_config = tune.RunConfig(name="canary", storage_path=str(tmp_path), verbose=0)
        (result,) = tune.Tuner(_storage_trainable, run_config=run_config).fit()
        assert result.metrics["local"] is True and result.metrics["exists"] == "Directory"
        assert result.metrics["trial_path"] == result.path  # the trial's folder on the sweep's storage
        assert result.path.startswith(str(tmp_path / "canary"))

        seen = Seen()
        fresh = tune.RunConfig(callbacks=[seen], failure_config=tune.FailureConfig(max_failures=3), verbose=0)
        tuner = _ray_compat.restore_tuner(str(tmp_path / "canary"), _storage_trainable, run_config=fresh,
                                          tune_config=tune.TuneConfig())
        tuner.fit()
    finally:
        ray.shutdown()
    assert seen.events == ["setup", "end"]  # the restored run called the callback it was given


# ------------------------------------------------------------------------------------------------------------------
# Ray Tune: trial actors' environment
# ------------------------------------------------------------------------------------------------------------------
def test_tune_actor_env_is_what_class_cache_gives_trial_actors():
    from ray.tune.execution import class_cache

    defaults, propagated = _ray_compat.tune_actor_env()
    assert defaults == class_cache.DEFAULT_ENV_VARS and propagated == frozenset(class_cache.ENV_VARS_TO_PROPAGATE)
    with _ray_compat.trial_actors_inherit():
        assert class_cache.DEFAULT_ENV_VARS == {} and not class_cache.ENV_VARS_TO_PROPAGATE
    assert class_cache.DEFAULT_ENV_VARS == defaults


# ------------------------------------------------------------------------------------------------------------------
# Optuna
# ------------------------------------------------------------------------------------------------------------------
def test_optuna_trial_by_number_reports_sets_attributes_and_tells(tmp_path):
    import optuna

    from sweeps.search import make_storage

    study = optuna.create_study(storage=make_storage(str(tmp_path / "journal.log")), study_name="canary")
    first, second = study.ask(), study.ask()
    first.suggest_float("x", 0.0, 1.0)
    again = _ray_compat.optuna_trial(study, first.number)
    assert again.number == first.number and again.params == first.params
    assert again.suggest_float("x", 0.0, 1.0) == first.params["x"]  # an adopted trial keeps its values
    again.report(0.25, 1)
    again.set_user_attr("k", "v")
    _ray_compat.optuna_trial(study, second.number).set_user_attr("k", "w")
    study.tell(first.number, 0.5)
    frozen = {t.number: t for t in study.get_trials()}
    assert frozen[first.number].intermediate_values == {1: 0.25} and frozen[first.number].user_attrs == {"k": "v"}
    assert frozen[second.number].user_attrs == {"k": "w"} and frozen[first.number].value == 0.5
