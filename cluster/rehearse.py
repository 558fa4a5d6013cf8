"""A multi-node Ray cluster on one machine, the shared services, and the smoke sweep submitted to it as a job::

    python -m cluster.rehearse                 # up, submit, report on which node each trial ran, down
    python -m cluster.rehearse --keep          # leave it running; `python -m cluster.rehearse --down` stops it

* Each node is a ``ray start --block`` process in a network namespace of its own (:mod:`cluster.netns`) with its
  own address and its own ``--temp-dir`` (nodes sharing one Ray temp folder delete each other's job files): a head
  with no CPUs, so that every trial runs on a worker, and ``--workers`` workers. Without namespaces (not root, no
  iproute2) the nodes are plain processes on 127.0.0.1, and the rehearsal says so.
* The services (:mod:`cluster.services`) listen on the host side of the namespaces' bridge, the one address the
  nodes reach them at; the storage path is a folder every node sees (``<root>/shared``), as NFS would be.
* The sweep goes in the way users submit it: ``ray job submit`` to the head's job API, with Ray's token
  authentication on (``RAY_AUTH_MODE=token``; the token is the rehearsal's own, ``<root>/ray_auth_token``, so
  ``~/.ray`` is never touched), ``--tracking-uri`` to the MLflow server and ``--optuna-storage`` to
  PostgreSQL; the database password reaches the driver as a file (``$PGPASSFILE``), never on a command line.
* Health checks are set for a loaded 2-core machine: a node is declared dead after 5 missed checks 2 s apart, each
  allowed 10 s (Ray's ``health_check_*`` settings, read by the head's GCS).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bap import metrics as M
from cluster import netns, processes
from cluster.services import Services

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = Path(".rehearsal")
GCS_PORT = 6379
DASHBOARD_PORT = 8265
OBJECT_STORE_BYTES = 200 * 1024 * 1024
HEALTH_CHECKS = {"RAY_health_check_period_ms": "2000", "RAY_health_check_timeout_ms": "10000",
                 "RAY_health_check_failure_threshold": "5"}


class RehearsalError(RuntimeError):
    pass


@dataclass
class Node:
    index: int  # 0 is the head
    address: str
    temp_dir: Path
    log: Path
    pid: int | None = None

    @property
    def role(self) -> str:
        return "head" if self.index == 0 else f"worker-{self.index}"


@dataclass
class Rehearsal:
    """The cluster and its services under ``root``; :meth:`up`, :meth:`submit`, :meth:`down`."""

    root: Path = DEFAULT_ROOT
    workers: int = 2
    cpus_per_worker: int = 1
    subnet: str = netns.DEFAULT_SUBNET
    use_namespaces: bool | None = None  # None: when available
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        why_not = netns.unavailable() if self.use_namespaces is not False else "turned off"
        self.fallback_reason = why_not
        self.network = netns.Network(prefix="bap", size=self.workers + 1, subnet=self.subnet) \
            if why_not is None else None
        host = self.network.host_address if self.network else "127.0.0.1"
        self.services = Services(self.root / "services", host=host, postgres_port=0, mlflow_port=0)
        for index in range(self.workers + 1):
            address = self.network.address(index) if self.network else "127.0.0.1"
            self.nodes.append(Node(index, address, self.root / f"node{index}" / "ray",
                                   self.root / "logs" / f"node{index}.log"))

    # --- where things are ----------------------------------------------------------------------------------
    @property
    def head(self) -> Node:
        return self.nodes[0]

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.head.address}:{DASHBOARD_PORT}"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    @property
    def storage_path(self) -> Path:
        return self.shared / "ray_results"

    @property
    def token_file(self) -> Path:
        """The cluster's Ray authentication token: the rehearsal's own, never the user's ``~/.ray/auth_token``."""
        return self.root / "ray_auth_token"

    def _auth_env(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file)}

    def node_env(self) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        return processes.environ(PATH=f"{venv_bin}:{os.environ.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0",
                                 **self._auth_env(), **HEALTH_CHECKS)

    def client_env(self) -> dict[str, str]:
        """For ``ray job submit``: token authentication on, with the rehearsal's token."""
        return processes.environ(RAY_ADDRESS=self.dashboard_url, **self._auth_env())

    def _write_token(self) -> None:
        if not self.token_file.exists():
            self.token_file.touch(mode=0o600)
            self.token_file.write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` makes

    # --- life cycle ------------------------------------------------------------------------------------------
    def up(self) -> None:
        self.down()
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.storage_path.mkdir(parents=True, exist_ok=True)
        self._write_token()
        try:
            if self.network:
                self.network.up()
            self.services.up()
            for node in self.nodes:
                self.start_node(node.index)
        except Exception:
            self.down()
            raise

    def _ray_start(self, node: Node) -> list[str]:
        ray = str(Path(sys.executable).parent / "ray")
        cmd = [ray, "start", "--block", "--disable-usage-stats", "--node-ip-address", node.address,
               "--temp-dir", str(node.temp_dir), "--object-store-memory", str(OBJECT_STORE_BYTES)]
        if node.index == 0:
            cmd += ["--head", "--port", str(GCS_PORT), "--num-cpus", "0", "--include-dashboard", "true",
                    "--dashboard-host", node.address, "--dashboard-port", str(DASHBOARD_PORT)]
        else:
            cmd += ["--address", f"{self.head.address}:{GCS_PORT}", "--num-cpus", str(self.cpus_per_worker)]
        if self.network is None:  # nodes side by side on one address: no fixed per-node ports
            cmd += ["--dashboard-agent-listen-port", str(processes.free_port()),
                    "--metrics-export-port", str(processes.free_port())]
        prefix = self.network.exec_prefix(node.index) if self.network else []
        return prefix + cmd

    def start_node(self, index: int, timeout: float = 120.0) -> None:
        node = self.nodes[index]
        if node.temp_dir.exists():
            shutil.rmtree(node.temp_dir, ignore_errors=True)
        node.temp_dir.mkdir(parents=True, exist_ok=True)
        offset = node.log.stat().st_size if node.log.exists() else 0
        node.pid = processes.spawn(self._ray_start(node), node.log, env=self.node_env(), cwd=self.root).pid

        def started() -> bool:
            with open(node.log, "rb") as log:
                log.seek(offset)
                return b"Ray runtime started" in log.read()

        if not processes.wait_for(lambda: started() or not processes.alive(node.pid), timeout, 0.5) \
                or not processes.alive(node.pid):
            raise RehearsalError(f"{node.role} did not start:\n{processes.log_tail(node.log)}")

    def kill_node(self, index: int) -> list[int]:
        """SIGKILL the node's raylet (a machine lost), as a fault; the pids that ran on that node."""
        node = self.nodes[index]
        pids = self.node_pids(index)
        raylets = [pid for pid in pids if processes.comm(pid) == "raylet"]
        if not raylets:
            raise RehearsalError(f"no raylet runs on {node.role}")
        for pid in raylets:
            os.kill(pid, signal.SIGKILL)
        return pids

    def node_pids(self, index: int) -> list[int]:
        """Every process of node ``index``: the namespace's, or (fallback) ``ray start``'s process group."""
        if self.network:
            return self.network.pids(index)
        node = self.nodes[index]
        return [pid for pid in processes.all_pids() if node.pid and processes.pgid(pid) == node.pid]

    def down(self) -> None:
        """Stop the nodes (workers first), the services and the network; nothing it started is left running."""
        for node in reversed(self.nodes):
            processes.stop(node.pid, signal.SIGTERM, 20.0)
            node.pid = None
        for pid in processes.all_pids():  # a rehearsal of an earlier, killed process: found by its temp folders
            if any(str(node.temp_dir) in processes.cmdline(pid) for node in self.nodes):
                processes.kill(pid)
        if self.network:
            self.network.down()
        self.services.down()

    # --- jobs ------------------------------------------------------------------------------------------------
    def sweep_command(self, name: str, extra: Sequence[str] = ()) -> list[str]:
        return ["python", "sweeps/decathlon.py", "--preset", "smoke", "--name", name,
                "--tracking-uri", self.services.tracking_uri, "--optuna-storage", self.services.optuna_storage,
                "--storage-path", str(self.storage_path), *extra]

    def submit(self, entrypoint: Sequence[str], submission_id: str) -> str:
        """``ray job submit --no-wait`` of ``entrypoint`` from this checkout, as a user runs it."""
        runtime_env = {"env_vars": {"PGPASSFILE": str(self.services.postgres.pgpass), "PYTHONUNBUFFERED": "1"}}
        cmd = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", self.dashboard_url,
               "--submission-id", submission_id, "--working-dir", str(REPO_ROOT),
               "--runtime-env-json", json.dumps(runtime_env), "--no-wait", "--", *entrypoint]
        result = subprocess.run(cmd, env=self.client_env(), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RehearsalError(f"ray job submit failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        return submission_id

    def job_client(self) -> Any:
        from ray.job_submission import JobSubmissionClient

        # The token as a header: this process's Ray may have settled on another auth mode when first imported.
        token = self.token_file.read_text().strip()
        return JobSubmissionClient(self.dashboard_url, headers={"Authorization": f"Bearer {token}"})

    def wait_job(self, submission_id: str, timeout: float = 600.0) -> str:
        client = self.job_client()
        from ray.job_submission import JobStatus

        terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
        processes.wait_for(lambda: client.get_job_status(submission_id) in terminal, timeout, 1.0)
        return str(client.get_job_status(submission_id).value)

    def job_logs(self, submission_id: str) -> str:
        return str(self.job_client().get_job_logs(submission_id))

    def driver_pid(self, submission_id: str) -> int | None:
        info = self.job_client().get_job_info(submission_id)
        driver = getattr(info, "driver_info", None)
        return int(driver.pid) if driver is not None and getattr(driver, "pid", None) else None


def trial_results(storage_path: Path, name: str) -> dict[str, list[dict[str, Any]]]:
    """Tune trial id -> every result it reported, in order (Tune's ``result.json`` per trial folder)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for result_file in sorted((storage_path / name).glob("*/result.json")):
        for line in result_file.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line still being written
            if record.get("trial_id"):
                found.setdefault(record["trial_id"], []).append(record)
    return found


def trial_nodes(storage_path: Path, name: str) -> dict[str, list[str]]:
    """Tune trial id -> the node addresses its results came from (Tune's ``node_ip``), in order."""
    return {trial: list(dict.fromkeys(r[M.TUNE_NODE_IP] for r in records if r.get(M.TUNE_NODE_IP)))
            for trial, records in trial_results(storage_path, name).items()}


class MemoryPeak(threading.Thread):
    """The machine's peak memory in use above what it used when started (MemAvailable, sampled every second)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.baseline = _available_kib()
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(1.0):
            self.peak_kib = max(self.peak_kib, self.baseline - _available_kib())

    def stop(self) -> float:
        self._stop_event.set()
        return self.peak_kib / 1024 / 1024


def _available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def _report(rehearsal: Rehearsal, name: str, status: str, seconds: Mapping[str, float], peak_gib: float) -> str:
    lines = [f"rehearsal: {len(rehearsal.nodes)} nodes "
             + ("in network namespaces" if rehearsal.network else
                f"as plain processes on 127.0.0.1 (no namespaces: {rehearsal.fallback_reason})"),
             *(f"  {node.role:9s} {node.address}" for node in rehearsal.nodes),
             f"services: MLflow {rehearsal.services.tracking_uri}, PostgreSQL {rehearsal.services.optuna_storage}",
             f"job {name}: {status}", "trials (node each reported from):"]
    roles = {node.address: node.role for node in rehearsal.nodes} if rehearsal.network else {}
    for trial, addresses in sorted(trial_nodes(rehearsal.storage_path, name).items()):
        lines.append(f"  {trial}  " + ", ".join(f"{a} ({roles.get(a, '?')})" for a in addresses))
    lines.append("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    lines.append(f"peak memory above the idle machine: {peak_gib:.2f} GiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.rehearse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    parser.add_argument("--no-namespaces", action="store_true", help="plain processes on 127.0.0.1")
    parser.add_argument("--keep", action="store_true", help="leave the cluster and services running")
    parser.add_argument("--down", action="store_true", help="stop a rehearsal left running by --keep")
    args = parser.parse_args(argv)
    rehearsal = Rehearsal(args.root, args.workers, args.cpus_per_worker,
                          use_namespaces=False if args.no_namespaces else None)
    if args.down:
        rehearsal.down()
        print("stopped")
        return 0
    memory, seconds, start = MemoryPeak(), {}, time.monotonic()
    memory.start()
    name = time.strftime("rehearsal-%Y%m%d-%H%M%S")
    try:
        rehearsal.up()
        seconds["up"] = time.monotonic() - start
        print(f"cluster up in {seconds['up']:.1f} s; dashboard {rehearsal.dashboard_url}", flush=True)
        rehearsal.submit(rehearsal.sweep_command(name), name)
        status = rehearsal.wait_job(name)
        seconds["job"] = time.monotonic() - start - seconds["up"]
        print(rehearsal.job_logs(name)[-3000:])
        print(_report(rehearsal, name, status, seconds, memory.stop()))
        return 0 if status == "SUCCEEDED" else 1
    finally:
        if not args.keep:
            rehearsal.down()


if __name__ == "__main__":
    sys.exit(main())
