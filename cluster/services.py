"""The services a cluster sweep shares, started and stopped by one command::

    python -m cluster.services up        # PostgreSQL + an MLflow server on 127.0.0.1; prints the URLs
    eval "$(python -m cluster.services env)"   # MLFLOW_TRACKING_URI, OPTUNA_STORAGE, PGPASSFILE for this shell
    python -m cluster.services status
    python -m cluster.services down      # stops both; the data stays in --root for the next `up`

* PostgreSQL (:mod:`cluster.postgres`) holds the MLflow backend store (database ``mlflow``) and Optuna's RDB
  storage (database ``optuna``).
* The MLflow server (:mod:`cluster.mlflow_server`) keeps artifacts in ``<root>/artifacts``; on a real cluster put
  ``--root`` on the shared file system (or pass ``--artifacts s3://...``-style storage via MLflow's own flags).
* Both listen on ``--host`` only: 127.0.0.1 by default. Give a cluster-internal address to let other nodes in;
  never a public one (MLflow's server has no authentication unless you turn on its basic auth -- README).
* The alternative to PostgreSQL for Optuna is ``JournalStorage`` on a shared file system:
  ``--optuna-storage /shared/optuna_journal.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from cluster import processes
from cluster.mlflow_server import MlflowServer, MlflowServerError
from cluster.postgres import Postgres, PostgresError

DEFAULT_ROOT = Path(".services")
STATE_FILE = "services.json"


@dataclass
class ServiceState:
    """What ``up`` started, as written to ``<root>/services.json`` (no secrets in it)."""

    host: str
    postgres_port: int
    mlflow_port: int
    postgres_pid: int | None = None
    mlflow_pid: int | None = None


class Services:
    """PostgreSQL and the MLflow server under one root folder."""

    def __init__(self, root: Path = DEFAULT_ROOT, host: str = "127.0.0.1", postgres_port: int = 5432,
                 mlflow_port: int = 5000) -> None:
        self.root = Path(root).resolve()
        saved = self._load()
        self.state = saved or ServiceState(host, postgres_port, mlflow_port)  # 0: a free port, chosen by up()

    @property
    def postgres(self) -> Postgres:
        return Postgres(self.root, self.state.host, self.state.postgres_port)

    @property
    def mlflow(self) -> MlflowServer:
        return MlflowServer(self.root, self.state.host, self.state.mlflow_port,
                            self.postgres.url("mlflow"), self.root / "artifacts")

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.url

    @property
    def optuna_storage(self) -> str:
        return self.postgres.url("optuna")

    def client_env(self) -> dict[str, str]:
        """What a driver needs to reach both services."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "OPTUNA_STORAGE": self.optuna_storage,
                "PGPASSFILE": str(self.postgres.pgpass)}

    # --- life cycle ------------------------------------------------------------------------------------------
    def up(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # PostgreSQL's user must be able to reach its folder below
        self.state.postgres_port = self.state.postgres_port or processes.free_port(self.state.host)
        self.state.mlflow_port = self.state.mlflow_port or processes.free_port(self.state.host)
        try:
            if not processes.alive(self.state.postgres_pid):
                self.state.postgres_pid = self.postgres.start()
                self._save()
            if not processes.alive(self.state.mlflow_pid):
                self.state.mlflow_pid = self.mlflow.start(self.postgres.pgpass)
                self._save()
        except (PostgresError, MlflowServerError):
            self.down()
            raise

    def down(self) -> list[str]:
        """Stop what runs (MLflow first: it holds connections to PostgreSQL); the names of what was stopped."""
        stopped = []
        if MlflowServer.stop(self.state.mlflow_pid):
            stopped.append("mlflow")
        if Postgres.stop(self.state.postgres_pid):
            stopped.append("postgres")
        self.state.mlflow_pid = self.state.postgres_pid = None
        (self.root / STATE_FILE).unlink(missing_ok=True)
        return stopped

    def stop_mlflow(self) -> None:
        """Only the tracking server (an outage; :meth:`start_mlflow` brings it back on the same port)."""
        MlflowServer.stop(self.state.mlflow_pid)
        self.state.mlflow_pid = None
        self._save()

    def start_mlflow(self) -> None:
        self.state.mlflow_pid = self.mlflow.start(self.postgres.pgpass)
        self._save()

    def status(self) -> dict[str, dict[str, object]]:
        return {
            "postgres": {"running": processes.alive(self.state.postgres_pid), "pid": self.state.postgres_pid,
                         "url": self.optuna_storage,
                         "answers": processes.port_open(self.state.host, self.state.postgres_port)},
            "mlflow": {"running": processes.alive(self.state.mlflow_pid), "pid": self.state.mlflow_pid,
                       "url": self.tracking_uri, "answers": self.mlflow.healthy()},
        }

    def pids(self) -> list[int]:
        return [pid for pid in (self.state.postgres_pid, self.state.mlflow_pid) if pid]

    def _load(self) -> ServiceState | None:
        path = self.root / STATE_FILE
        if not path.exists():
            return None
        return ServiceState(**json.loads(path.read_text()))

    def _save(self) -> None:
        (self.root / STATE_FILE).write_text(json.dumps(asdict(self.state), indent=2))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cluster.services", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="folder for data, logs and artifacts (on a cluster: the shared file system)")
    parser.add_argument("--host", default="127.0.0.1", help="address both services listen on (default loopback)")
    parser.add_argument("--postgres-port", type=int, default=5432, help="0 picks a free port")
    parser.add_argument("--mlflow-port", type=int, default=5000, help="0 picks a free port")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    services = Services(args.root, args.host, args.postgres_port, args.mlflow_port)
    if args.command == "up":
        try:
            services.up()
        except (PostgresError, MlflowServerError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"PostgreSQL    {services.optuna_storage}  (password in {services.postgres.pgpass}: "
              "export PGPASSFILE to it)")
        print(f"MLflow server {services.tracking_uri}  (UI and API; artifacts in {services.root / 'artifacts'})")
        print(f"logs          {services.root / 'logs'}")
        print(f"use them:     eval \"$(python -m cluster.services env --root {args.root})\"; "
              "python sweeps/decathlon.py --tracking-uri $MLFLOW_TRACKING_URI --optuna-storage $OPTUNA_STORAGE")
        return 0
    if args.command == "down":
        stopped = services.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if args.command == "env":
        for key, value in services.client_env().items():
            print(f"export {key}={value}")
        return 0
    report = services.status()
    for name, info in report.items():
        state = "running" if info["running"] else "stopped"
        print(f"{name:9s} {state:8s} pid={info['pid']} {info['url']} answers={info['answers']}")
    return 0 if all(info["running"] for info in report.values()) else 3


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
