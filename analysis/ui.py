"""What a sweep looks like in a browser: the MLflow UI and optuna-dashboard on its local stores.

Usage::

    python -m analysis.ui                                        # sqlite:///mlruns.db, optuna_journal.log
    python -m analysis.ui --tracking-uri sqlite:///runs/mlruns.db --optuna-storage runs/optuna_journal.log \\
        --experiment decathlon --mlflow-port 5000 --dashboard-port 8080
    make ui

Both servers listen on 127.0.0.1 only, each in a process group of its own; the command prints their URLs -- the
MLflow one opens the experiment's model-training runs table (``?workflowType=machine_learning``; MLflow 3 opens an
experiment in its GenAI view otherwise), where each sweep is a parent run with one nested child run per trial --
and stops both on Ctrl-C or SIGTERM, leaving nothing running. Port 0 picks a free port. optuna-dashboard is the
``ui`` extra (``pip install 'bap-sweeps[ui]'``); without it only the MLflow UI starts, and a line says so.

:func:`mlflow_experiment_url` builds those links for other code (a report linking its runs); :func:`start_ui`
starts both servers from Python (the browser tests use it) and returns a :class:`UI` to stop them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bap import metrics as M
from cluster import processes

__all__ = ["DEFAULT_DASHBOARD_PORT", "DEFAULT_MLFLOW_PORT", "DEFAULT_OPTUNA_STORAGE", "UI", "Server", "UIError", "main", "mlflow_experiment_url", "start_ui"]

HOST = "127.0.0.1"
DEFAULT_OPTUNA_STORAGE = "optuna_journal.log"  # the sweeps' default (sweeps.config.DEFAULT_OPTUNA_STORAGE)
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_DASHBOARD_PORT = 8080
UI_EXTRA = "pip install 'bap-sweeps[ui]'"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0


class UIError(RuntimeError):
    """A server did not start (the message carries the end of its log)."""


def mlflow_experiment_url(base_url: str, experiment_id: str | int, run_id: str | None = None) -> str:
    """The MLflow UI's link to an experiment's model-training runs table, or to one run of it.

    Args:
        base_url: The UI's address, e.g. ``http://127.0.0.1:5000`` (a trailing slash is fine).
        experiment_id: The experiment's id (not its name).
        run_id: A run of that experiment: link to its page instead.

    Returns:
        ``<base>/#/experiments/<id>?workflowType=machine_learning``, or
        ``<base>/#/experiments/<id>/runs/<run_id>?workflowType=machine_learning``.
    """
    path = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base_url.rstrip('/')}/{path}?{M.UI_TRAINING_VIEW}"


def _port(port: int, what: str, flag: str, host: str = HOST) -> int:
    """``port``, or a free one for 0; refuses a port in use (another server there would answer for ours)."""
    if not port:
        return processes.free_port(host)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            raise UIError(f"port {port} on {host} is in use (another {what}?); stop it, or pass {flag} 0 for a "
                          "free port.") from None
    return port


@dataclass
class Server:
    """One server process (the leader of its own process group) and where it logs."""

    name: str
    url: str
    process: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to the whole process group, then SIGKILL to what is left after ``timeout`` seconds."""
        processes.stop(self.process.pid, signal.SIGTERM, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1.0)


def _spawn(name: str, cmd: Sequence[str], url: str, log_dir: Path, env: dict[str, str] | None = None) -> Server:
    log = log_dir / f"{name}.log"
    process = processes.spawn(cmd, log, env={**os.environ, **(env or {})}, die_with_parent=True)
    return Server(name, url, process, log)


def _wait_ready(server: Server, probe: str, timeout: float = START_TIMEOUT_S) -> None:
    """Poll ``probe`` (a URL) until it answers 200; raise with the log's end if the server exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise UIError(f"{server.name} exited with code {server.process.returncode} before it answered on "
                          f"{server.url} (log {server.log}):\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(probe, timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise UIError(f"{server.name} did not answer on {probe} within {timeout:.0f} s (log {server.log}):\n"
                  f"{server.log_tail()}")


def _executable(name: str) -> str | None:
    """A console script of this interpreter's environment (else on PATH)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


def start_mlflow(tracking_uri: str, port: int, log_dir: Path, host: str = HOST) -> Server:
    """``mlflow ui`` on ``tracking_uri``, lean (one worker, no job runner), started but not waited for."""
    port = _port(port, "MLflow UI", "--mlflow-port", host)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", host,
           "--port", str(port), "--workers", "1"]
    return _spawn("mlflow", cmd, f"http://{host}:{port}", log_dir,
                  env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def dashboard_missing() -> str | None:
    """Why optuna-dashboard cannot start (None: it can)."""
    if _executable("optuna-dashboard") is None:
        return f"optuna-dashboard is not installed ({UI_EXTRA} adds it); starting the MLflow UI only."
    return None


def start_dashboard(storage: str, port: int, log_dir: Path, host: str = HOST) -> Server:
    """``optuna-dashboard`` on a journal file or RDB URL, started but not waited for."""
    exe = _executable("optuna-dashboard")
    if exe is None:
        raise UIError(dashboard_missing() or "optuna-dashboard is not installed")
    port = _port(port, "optuna-dashboard", "--dashboard-port", host)
    cmd = [exe, "--host", host, "--port", str(port), storage]
    return _spawn("optuna-dashboard", cmd, f"http://{host}:{port}", log_dir)


def experiment_id(tracking_uri: str, experiment: str) -> str | None:
    """The id of an MLflow experiment given by name (or id); None if the store has no such experiment."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None and experiment.isdigit():
        with contextlib.suppress(MlflowException):
            found = client.get_experiment(experiment)
    return None if found is None else found.experiment_id


@dataclass
class UI:
    """The servers :func:`start_ui` started, and the links to show.

    Attributes:
        mlflow: The MLflow UI.
        dashboard: optuna-dashboard (None: not installed, or its storage is missing; ``notes`` says which).
        experiment_id: The experiment's id (None if the store has none of that name yet).
        log_dir: The servers' logs.
        notes: Lines for the user (what was skipped and why).
    """

    mlflow: Server
    dashboard: Server | None
    experiment_id: str | None
    log_dir: Path
    notes: list[str] = field(default_factory=list)

    @property
    def servers(self) -> list[Server]:
        return [s for s in (self.mlflow, self.dashboard) if s is not None]

    @property
    def mlflow_url(self) -> str:
        """The experiment's runs table, or the UI's front page when the experiment is unknown."""
        if self.experiment_id is None:
            return self.mlflow.url + "/"
        return mlflow_experiment_url(self.mlflow.url, self.experiment_id)

    @property
    def dashboard_url(self) -> str | None:
        return None if self.dashboard is None else self.dashboard.url + "/dashboard/"

    def lines(self) -> list[str]:
        """What to print: the URLs, the notes, where the logs are."""
        out = [f"MLflow UI:        {self.mlflow_url}"]
        if self.dashboard_url:
            out.append(f"optuna-dashboard: {self.dashboard_url}")
        out += self.notes
        out.append(f"logs in {self.log_dir}; Ctrl-C stops {'both' if len(self.servers) > 1 else 'it'}.")
        return out

    def stop(self) -> None:
        """Stop every server (process group by process group)."""
        for server in self.servers:
            server.stop()

    def __enter__(self) -> UI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _storage_missing(storage: str) -> bool:
    return "://" not in storage and not Path(storage).is_file()


def start_ui(
    tracking_uri: str = M.DEFAULT_TRACKING_URI,
    optuna_storage: str | None = DEFAULT_OPTUNA_STORAGE,
    experiment: str = M.DEFAULT_EXPERIMENT,
    *,
    mlflow_port: int = DEFAULT_MLFLOW_PORT,
    dashboard_port: int = DEFAULT_DASHBOARD_PORT,
    log_dir: str | Path | None = None,
    timeout: float = START_TIMEOUT_S,
) -> UI:
    """Start the MLflow UI (and optuna-dashboard, when installed and ``optuna_storage`` is given) and wait until
    they answer.

    Args:
        tracking_uri: The MLflow store (a ``sqlite:///`` file, a folder, a database URL).
        optuna_storage: The Optuna studies: a journal file or an RDB URL (None: no dashboard).
        experiment: The MLflow experiment (name or id) to link to.
        mlflow_port: Port of the MLflow UI (0: a free one).
        dashboard_port: Port of optuna-dashboard (0: a free one).
        log_dir: Where the servers log (default: a new temporary folder).
        timeout: Seconds each server gets to answer.

    Returns:
        The running :class:`UI`; stop it (or use it as a context manager).

    Raises:
        UIError: A server exited or did not answer in time (both are stopped first).
    """
    if tracking_uri.startswith(("http://", "https://")):
        exp_id = experiment_id(tracking_uri, experiment)
        link = mlflow_experiment_url(tracking_uri, exp_id) if exp_id else tracking_uri
        raise UIError(f"{tracking_uri} is a tracking server: it serves the MLflow UI itself, open {link}")
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="bap-ui-"))
    logs.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    mlflow = start_mlflow(tracking_uri, mlflow_port, logs)
    dashboard = None
    try:
        if optuna_storage is None:
            pass
        elif (missing := dashboard_missing()) is not None:
            notes.append(missing)
        elif _storage_missing(optuna_storage):
            notes.append(f"no Optuna storage at {optuna_storage!r} (run a sweep first, or pass --optuna-storage); "
                         "optuna-dashboard not started.")
        else:
            dashboard = start_dashboard(optuna_storage, dashboard_port, logs)
        exp_id = experiment_id(tracking_uri, experiment)  # while the servers start
        if exp_id is None:
            notes.append(f"no MLflow experiment {experiment!r} in {tracking_uri} yet; the link opens the "
                         "experiment list.")
        _wait_ready(mlflow, mlflow.url + "/health", timeout)
        if dashboard is not None:
            _wait_ready(dashboard, dashboard.url + "/api/studies", timeout)
    except BaseException:
        for server in (mlflow, dashboard):
            if server is not None:
                server.stop()
        raise
    return UI(mlflow, dashboard, exp_id, logs, notes)


class _Stop(Exception):
    """SIGTERM, turned into an exception so that the servers are stopped on the way out."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Stop


def _watch(ui: UI) -> int:
    """Block until Ctrl-C / SIGTERM (0) or until a server dies (1)."""
    while True:
        for server in ui.servers:
            if not server.alive():
                print(f"{server.name} exited with code {server.process.returncode} (log {server.log}):\n"
                      f"{server.log_tail()}", file=sys.stderr)
                return 1
        time.sleep(0.5)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.ui", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or M.DEFAULT_TRACKING_URI,
                   help=f"MLflow store (default $MLFLOW_TRACKING_URI, else {M.DEFAULT_TRACKING_URI})")
    p.add_argument("--optuna-storage", default=os.environ.get("OPTUNA_STORAGE") or DEFAULT_OPTUNA_STORAGE,
                   help=f"Optuna journal file or RDB URL (default $OPTUNA_STORAGE, else {DEFAULT_OPTUNA_STORAGE})")
    p.add_argument("--experiment", default=M.DEFAULT_EXPERIMENT,
                   help=f"MLflow experiment to open (default {M.DEFAULT_EXPERIMENT})")
    p.add_argument("--mlflow-port", type=int, default=DEFAULT_MLFLOW_PORT,
                   help=f"MLflow UI port (default {DEFAULT_MLFLOW_PORT}; 0 = a free port)")
    p.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT,
                   help=f"optuna-dashboard port (default {DEFAULT_DASHBOARD_PORT}; 0 = a free port)")
    p.add_argument("--log-dir", default=None, help="where the servers log (default: a new temporary folder)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: start both servers, print their URLs, stop both on Ctrl-C / SIGTERM."""
    args = _parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    ui, code = None, 1
    try:
        ui = start_ui(args.tracking_uri, args.optuna_storage, args.experiment, mlflow_port=args.mlflow_port,
                      dashboard_port=args.dashboard_port, log_dir=args.log_dir)
        for line in ui.lines():
            print(line, flush=True)
        code = _watch(ui)
    except UIError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, _Stop):
        code = 0
    finally:
        if ui is not None:
            # A second Ctrl-C / SIGTERM must not cut the shutdown short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            ui.stop()
            print("stopped the MLflow UI" + (" and optuna-dashboard." if ui.dashboard else "."), flush=True)
            if code == 0 and args.log_dir is None:  # the logs of a clean run in a temporary folder: not kept
                shutil.rmtree(ui.log_dir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    return code


if __name__ == "__main__":
    sys.exit(main())
