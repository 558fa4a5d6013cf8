"""A sweep's own local Ray starts without the dashboard API server and the autoscaler monitor
(:mod:`sweeps.local_ray`), still runs tasks, and leaves Ray as it was."""

from __future__ import annotations

import os

import psutil
import pytest

from sweeps import local_ray

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


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "control"])
def test_local_ray_starts_without_api_server_and_monitor(lean):
    import ray
    from ray._private.node import Node

    before = {name: getattr(Node, name) for name in local_ray.SKIPPED_SERVICES}
    assert not ray.is_initialized()
    try:
        if lean:
            with local_ray.lean_head() as skipped:
                ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
            assert skipped
        else:
            ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
        running = _ray_service_scripts()

        @ray.remote
        def pid() -> int:
            return os.getpid()

        assert ray.get(pid.remote()) != os.getpid()
    finally:
        ray.shutdown()
    assert {name: getattr(Node, name) for name in local_ray.SKIPPED_SERVICES} == before  # restored after init
    assert running == (set() if lean else set(SKIPPED_SCRIPTS))  # the control: without it, both run


def test_lean_head_leaves_a_ray_without_those_methods_alone():
    class OtherNode:
        def start_api_server(self, **kwargs):
            return "api"

    with local_ray.lean_head(OtherNode) as skipped:
        assert OtherNode().start_api_server() == "api"
    assert not skipped and not hasattr(OtherNode, "start_monitor")


def test_lean_head_restores_the_methods_on_error():
    class FakeNode:
        def start_api_server(self, **kwargs):
            return "api"

        def start_monitor(self):
            return "monitor"

    with pytest.raises(RuntimeError), local_ray.lean_head(FakeNode) as skipped:
        assert skipped and FakeNode().start_api_server(include_dashboard=False) is None
        assert FakeNode().start_monitor() is None
        raise RuntimeError("ray.init failed")
    assert FakeNode().start_api_server() == "api" and FakeNode().start_monitor() == "monitor"
