"""The local Ray a sweep starts (:class:`sweeps.session.RaySession`), seen from outside its driver: every process of it
listens on the loopback interface only, and none outlives the driver -- after a normal exit, and after a ``kill -9``
(Ray's agents alone would hang on for a minute or more) -- while another sweep's Ray on the machine is left alone.

The slow tests run this file as a driver subprocess (``python tests/sweeps/test_local_ray.py``) that starts its Ray
the way a sweep does, runs a task that leaves a child process of its own running (as a trial's data loader would),
prints what it started and waits for a line on stdin. The fast ones check the watchdog (:class:`RayWatchdog`) with
stand-in processes: which it counts as its Ray's, and that it ends them when its driver dies or stops.
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sweeps import session as session_module
from sweeps import watchdog as watchdog_module

REPO = Path(__file__).resolve().parents[2]
# Ray's agents, left to themselves, exit ~60-70 s after a SIGKILL-ed driver (a publish to the dead GCS times out
# first): a deadline below that is what makes the test tell the watchdog's clean-up (a few seconds) from Ray's.
GONE_DEADLINE_S = 40.0
RAY_PROCESSES = ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent")  # at least these


# ------------------------------------------------------------------------------------------------------------------
# The driver subprocess
# ------------------------------------------------------------------------------------------------------------------
def _driver_main(no_watchdog: bool) -> None:
    from sweeps._ray_compat import ray_session_dir
    from sweeps.config import from_mapping

    if no_watchdog:  # the control: what Ray alone leaves behind (run by hand: ... test_local_ray.py --no-watchdog)
        session_module.RayWatchdog.start = classmethod(lambda cls: None)
    # Cold (no prestarted workers, 3 CPUs > 2 x 1 trial): lighter on 2 cores; warm workers are workers all the same.
    with session_module.RaySession(from_mapping({"num_cpus": 3, "max_concurrent": 1})) as session:
        import ray

        @ray.remote
        def start_child() -> int:
            return subprocess.Popen(["sleep", "600"]).pid  # noqa: S603, S607  (a trial's own child process)

        child = ray.get(start_child.remote())
        print(json.dumps({"session_dir": ray_session_dir(), "child": child,
                          "watchdog": session.watchdog.pid if session.watchdog else None}), flush=True)
        sys.stdin.readline()
    print("stopped", flush=True)


class Driver:
    """One driver subprocess, and every process it started (recorded once its Ray runs)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        with open(log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True, cwd=REPO)
        ready, _, _ = select.select([self.proc.stdout], [], [], 180)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("{"):
            self.proc.kill()
            pytest.fail(f"the driver did not start its Ray (exit code {self.proc.wait()}): {line!r}\n"
                        f"{log.read_text()[-3000:]}")
        self.info = json.loads(line)
        self.processes = psutil.Process(self.proc.pid).children(recursive=True)  # Ray, its workers, the watchdog

    def by_title(self) -> dict[str, list[psutil.Process]]:
        """The processes by name, or by title for those that set one (``ray::DashboardAgent``)."""
        out: dict[str, list[psutil.Process]] = {}
        for p in self.processes:
            with _gone_ok():
                title = (p.cmdline() or [""])[0].split(" ")[0]
                out.setdefault(title if title.startswith("ray::") else p.name(), []).append(p)
        return out

    def exit(self) -> None:
        """A normal exit: the driver leaves its ``with RaySession`` block and ends."""
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(timeout=60) == 0

    def close(self) -> None:
        """Whatever the test did: nothing of this driver's left running."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for p in _alive(self.processes):
            with _gone_ok():
                p.kill()


class _gone_ok:  # noqa: N801
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is not None and issubclass(exc_type, psutil.NoSuchProcess)


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (``is_running`` also checks that the pid was not reused); zombies are gone."""
    alive = []
    for p in processes:
        with _gone_ok():
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
    return alive


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (alive := _alive(processes)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return alive


def _describe(processes: list[psutil.Process]) -> str:
    out = []
    for p in processes:
        try:
            command = " ".join(" ".join(p.cmdline()).split())  # titles are padded with spaces
            out.append(f"{p.pid} {command[:100]}")
        except psutil.Error:
            out.append(f"{p.pid} (gone)")
    return "; ".join(out)


@pytest.fixture
def drivers(tmp_path):
    started: list[Driver] = []

    def start() -> Driver:
        started.append(Driver(tmp_path / f"driver{len(started)}.err"))
        return started[-1]

    yield start
    for driver in started:
        driver.close()


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # a dual-stack socket bound to ::ffff:127.0.0.1
    return (mapped or address).is_loopback


# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_local_ray_listens_on_loopback_only_and_a_normal_exit_leaves_nothing(drivers):
    driver = drivers()
    named = driver.by_title()
    assert set(RAY_PROCESSES) <= set(named), sorted(named)
    assert driver.info["watchdog"] in {p.pid for p in driver.processes}
    session_dir = driver.info["session_dir"]
    for name in RAY_PROCESSES:  # they are this driver's Ray: each writes its logs into its session folder
        (proc,) = named[name]
        assert any(f.path.startswith(session_dir + os.sep) for f in proc.open_files()), name

    listening, bound = {}, []
    for p in [psutil.Process(driver.proc.pid), *driver.processes]:
        with _gone_ok():
            for conn in p.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    listening.setdefault(p.name(), []).append(f"{conn.laddr.ip}:{conn.laddr.port}")
                elif conn.type == 2 and conn.laddr and not conn.raddr:  # SOCK_DGRAM: a bound UDP socket
                    bound.append(f"{p.name()} udp {conn.laddr.ip}:{conn.laddr.port}")
    assert {"gcs_server", "raylet"} <= set(listening), listening  # the check below looks at real sockets
    exposed = {name: [a for a in addresses if not _is_loopback(a.rsplit(":", 1)[0])]
               for name, addresses in listening.items()}
    assert not any(exposed.values()), f"listening beyond the loopback interface: {exposed}"
    assert not [b for b in bound if not _is_loopback(b.split()[-1].rsplit(":", 1)[0])], bound

    driver.exit()
    survivors = _wait_gone(driver.processes, GONE_DEADLINE_S)  # the watchdog included: it exits too
    assert not survivors, f"still running after a normal exit: {_describe(survivors)}"


@pytest.mark.slow
def test_a_killed_driver_leaves_no_ray_process_and_another_sweeps_ray_keeps_running(drivers):
    victim, other = drivers(), drivers()
    assert {p.pid for p in victim.processes}.isdisjoint(p.pid for p in other.processes)
    assert victim.info["child"] in {p.pid for p in victim.processes}

    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait()
    survivors = _wait_gone(victim.processes, GONE_DEADLINE_S)
    assert not survivors, f"processes of the killed driver still running: {_describe(survivors)}"

    spared = _alive(other.processes)
    assert spared == other.processes, f"the other Ray lost: {_describe(set(other.processes) - set(spared))}"
    other.exit()
    assert not _wait_gone(other.processes, GONE_DEADLINE_S)


# ------------------------------------------------------------------------------------------------------------------
# The watchdog, with stand-ins for Ray's processes
# ------------------------------------------------------------------------------------------------------------------
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the watchdog reads /proc")


def _sleeper(title: str = "sleep", env: dict | None = None, stdin_path: Path | None = None) -> psutil.Process:
    """A ``sleep 120`` titled ``title`` (as Ray's ``ray::*`` processes are), with its stdin on ``stdin_path``."""
    stdin = open(stdin_path) if stdin_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(["bash", "-c", f'exec -a "{title}" sleep 120'], stdin=stdin, env=env)
    finally:
        if stdin_path:
            stdin.close()
    p = psutil.Process(proc.pid)
    deadline = time.monotonic() + 10
    while p.cmdline()[:1] != [title] and time.monotonic() < deadline:  # until bash has exec-ed
        time.sleep(0.02)
    return p


@linux_only
def test_watchdog_counts_only_its_rays_processes_and_ends_them(tmp_path):
    session_dir, elsewhere = tmp_path / "session_1", tmp_path / "session_10"  # a prefix is not the folder
    for folder in (session_dir, elsewhere):
        folder.mkdir()
        (folder / "raylet.out").write_text("log\n")
    env = {k: v for k, v in os.environ.items() if k != watchdog_module.OWNER_ENV}
    ours = [_sleeper(env={**env, watchdog_module.OWNER_ENV: "token"}),  # started by our Ray, title or not
            _sleeper("ray::DashboardAgent", env, session_dir / "raylet.out")]  # its environment unreadable
    others = [_sleeper(env={**env, watchdog_module.OWNER_ENV: "other-token"}),  # another sweep's Ray
              _sleeper("ray::DashboardAgent", env, elsewhere / "raylet.out"),  # another Ray's agent
              _sleeper("tail", env, session_dir / "raylet.out")]  # someone reading our Ray's logs
    try:
        found = watchdog_module.ray_processes("token", [str(session_dir)], "/nonexistent/ray")
        assert {p.pid for p in ours} <= set(found) and not {p.pid for p in others} & set(found)
        watchdog_module.end_processes(lambda: watchdog_module.ray_processes("token", [str(session_dir)], "/x"))
        assert not _wait_gone(ours, 10) and _alive(others) == others
    finally:
        for p in ours + others:
            with _gone_ok():
                p.kill()


def _watchdog_driver(tmp_path: Path) -> tuple[subprocess.Popen, psutil.Process, psutil.Process]:
    """A driver whose watchdog watches a stand-in Ray process (started inside ``marking``); it stops the watchdog
    when told, then waits for the next line."""
    code = (
        "import subprocess, sys\n"
        "from sweeps.watchdog import RayWatchdog\n"
        "watchdog = RayWatchdog.start()\n"
        "with watchdog.marking():\n"
        "    ray_process = subprocess.Popen(['sleep', '120'])\n"
        "print(watchdog.pid, ray_process.pid, flush=True)\n"
        "sys.stdin.readline()\n"
        "watchdog.stop()\n"
        "sys.stdin.readline()\n")
    driver = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    watchdog, ray_process = (psutil.Process(int(pid)) for pid in driver.stdout.readline().split())
    return driver, watchdog, ray_process


@linux_only
@pytest.mark.parametrize("end", ["sigkill", "stop"])
def test_watchdog_ends_its_rays_processes_when_the_driver_dies_and_exits_after_a_stop(tmp_path, end):
    driver, watchdog, ray_process = _watchdog_driver(tmp_path)
    try:
        assert watchdog.is_running() and ray_process.is_running()
        if end == "sigkill":
            driver.kill()
            driver.wait()
        else:  # a normal shutdown that left a process of its Ray: the watchdog ends it after a grace period
            driver.stdin.write("\n")
            driver.stdin.flush()
            time.sleep(1)
            assert ray_process.is_running()
        assert not _wait_gone([ray_process, watchdog], 20)
        if end == "stop":
            assert driver.poll() is None  # the driver lives on; its watchdog is gone
    finally:
        driver.kill()
        driver.wait()
        with _gone_ok():
            ray_process.kill()


if __name__ == "__main__":
    _driver_main(no_watchdog="--no-watchdog" in sys.argv)
