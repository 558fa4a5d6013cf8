"""Running the sweep driver as a real subprocess, measuring its memory, and one shared smoke sweep.

``smoke_sweep`` (session scope) runs ``python sweeps/decathlon.py --preset smoke`` once -- local Ray, SQLite MLflow,
an Optuna journal file, the real ``bap.train.train`` -- and hands its locations to every test that reads a finished
sweep (the sweep tests here; the analysis tests can reuse it: import it, or move it to ``conftest.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "sweeps" / "decathlon.py"


@dataclass
class SweepRun:
    """Where one driver subprocess put its results, and what it cost."""

    root: Path
    name: str
    tracking_uri: str
    storage_path: Path
    optuna_storage: Path
    experiment: str = "decathlon"
    returncode: int | None = None
    output: str = ""
    wall_s: float = 0.0
    peak_pss_bytes: int = 0  # all processes of the sweep together (driver, Ray, trial workers), proportional set size
    peak_rss_bytes: int = 0  # the same, resident set size (counts shared libraries once per process)
    peak_processes: int = 0
    extra_args: list[str] = field(default_factory=list)

    @property
    def experiment_dir(self) -> Path:
        return self.storage_path / self.name

    def args(self) -> list[str]:
        return ["--name", self.name, "--tracking-uri", self.tracking_uri, "--storage-path", str(self.storage_path),
                "--optuna-storage", str(self.optuna_storage), "--experiment", self.experiment]


def new_run(root: Path, name: str) -> SweepRun:
    root.mkdir(parents=True, exist_ok=True)
    return SweepRun(root=root, name=name, tracking_uri=f"sqlite:///{root}/mlruns.db",
                    storage_path=root / "ray_results", optuna_storage=root / "optuna_journal.log")


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class MemorySampler:
    """Samples the summed PSS/RSS of a process tree every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak_pss = self.peak_rss = self.peak_n = 0
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pss = rss = 0
            procs = _tree(self.proc)
            for p in procs:
                try:
                    info = p.memory_full_info()
                    pss += getattr(info, "pss", info.rss)
                    rss += info.rss
                    self.pids.add(p.pid)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            self.peak_n = max(self.peak_n, len(procs))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def start_driver(run: SweepRun, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, MemorySampler]:
    cmd = [sys.executable, str(DRIVER), *args, *run.args()]
    proc = subprocess.Popen(cmd, cwd=run.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    return proc, MemorySampler(proc.pid)


def communicate_or_fail(proc: subprocess.Popen, timeout: float, what: str) -> str:
    """``proc``'s output once it exits; past ``timeout`` its whole process tree is killed and the test fails."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, _ = proc.communicate()
        pytest.fail(f"{what} timed out after {timeout} s:\n{out[-5000:]}")
    return out


def run_driver(run: SweepRun, *args: str, env: dict | None = None, timeout: float = 600) -> SweepRun:
    start = time.monotonic()
    proc, sampler = start_driver(run, *args, env=env)
    try:
        out = communicate_or_fail(proc, timeout, "sweep driver")
    finally:
        sampler.stop()
    run.returncode, run.output, run.wall_s = proc.returncode, out, time.monotonic() - start
    run.peak_pss_bytes, run.peak_rss_bytes = max(run.peak_pss_bytes, sampler.peak_pss), max(
        run.peak_rss_bytes, sampler.peak_rss)
    run.peak_processes = max(run.peak_processes, sampler.peak_n)
    wait_gone(sampler.pids - {proc.pid})
    return run


def kill_tree(pid: int) -> None:
    for p in reversed(_tree(psutil.Process(pid)) if psutil.pid_exists(pid) else []):
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def wait_gone(pids: set[int], timeout: float = 30) -> list[int]:
    """Wait for processes of a finished/killed sweep to exit (Ray's reaper cleans up after a dead driver)."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if psutil.pid_exists(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
    return alive


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory, mini_data) -> SweepRun:
    """One finished smoke sweep (4 trials: budgets 0.25/0.5/0.75/1.0) with real Ray, MLflow (SQLite) and Optuna.

    ``mini_data`` first builds the mini-decathlon cache the sweep then reads (the session's private BAP_CACHE_DIR).
    """
    run = new_run(tmp_path_factory.mktemp("smoke_sweep"), "smoke-fixture")
    run_driver(run, "--preset", "smoke")
    if run.returncode != 0:
        pytest.fail(f"smoke sweep failed with exit code {run.returncode}:\n{run.output[-8000:]}")
    return run
