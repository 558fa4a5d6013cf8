"""A PostgreSQL server of the project's own: one data folder, one role (``bap``), databases ``mlflow`` and ``optuna``.

Debian's ``postgresql`` package provides the binaries (``apt-get install postgresql``). The server refuses to run
as root, so under root it runs as the package's ``postgres`` user. The role's password never appears on a command
line or in a log: it is generated once (or taken from ``$BAP_POSTGRES_PASSWORD``), kept in a ``pgpass`` file
readable only by its owner, and every client (psycopg through SQLAlchemy, under Optuna and under the MLflow server) finds it
through ``$PGPASSFILE``. Database URLs therefore carry no password: ``postgresql://bap@127.0.0.1:5432/optuna``.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cluster import processes

ROLE = "bap"
DATABASES = ("mlflow", "optuna")
SERVICE_USER = "postgres"  # Debian's package creates it; the server will not run as root
PASSWORD_ENV = "BAP_POSTGRES_PASSWORD"


class PostgresError(RuntimeError):
    pass


def bin_dir() -> Path:
    """The folder of ``initdb``/``postgres``/``pg_isready``: on PATH, else Debian's newest ``/usr/lib/postgresql/*``."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not versions:
        raise PostgresError("PostgreSQL is not installed: `apt-get update && apt-get install -y postgresql` "
                            "(Debian/Ubuntu), or put initdb/postgres on PATH")
    return Path(versions[-1]).parent


@dataclass(frozen=True)
class Postgres:
    """One server: its folder under the services root, and where it listens."""

    root: Path
    host: str
    port: int

    @property
    def data(self) -> Path:
        return self.root / "postgres" / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "postgres" / "sockets"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "postgres.log"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    def url(self, database: str) -> str:
        return f"postgresql://{ROLE}@{self.host}:{self.port}/{database}"

    # --- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> int:
        """Initialise the data folder on first use, start the server, create the role and databases; its pid."""
        binaries = bin_dir()
        user = _service_user()
        if not (self.data / "PG_VERSION").exists():
            self._init(binaries, user)
        self._write_hba(user)
        self.sockets.mkdir(parents=True, exist_ok=True)
        _own(self.sockets, user, mode=0o700)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        _own(self.log, user, mode=0o600)
        cmd = [str(binaries / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.sockets),
               "-c", f"listen_addresses={self.host}"]
        pid = processes.spawn(cmd, self.log, user=user).pid
        if not processes.wait_for(lambda: self._ready(binaries) or not processes.alive(pid), 60.0) \
                or not processes.alive(pid):
            processes.stop(pid, signal.SIGQUIT, 5.0)
            raise PostgresError(f"PostgreSQL did not start on {self.host}:{self.port}:\n"
                                f"{processes.log_tail(self.log)}")
        self._create_role_and_databases(binaries, user)
        return pid

    @staticmethod
    def stop(pid: int | None) -> bool:
        """Fast shutdown (SIGINT: roll back open transactions, then exit)."""
        return processes.stop(pid, signal.SIGINT, 30.0)

    def _init(self, binaries: Path, user: str | None) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        _own(self.data.parent, user, mode=0o700)
        _own(self.data, user, mode=0o700)
        password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(24)
        self.pgpass.write_text(f"*:*:*:{ROLE}:{password}\n")
        self.pgpass.chmod(0o600)
        result = subprocess.run(
            [str(binaries / "initdb"), "-D", str(self.data), "-U", SERVICE_USER, "--auth-local=trust",
             "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-instructions"],
            user=user, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PostgresError(f"initdb failed in {self.data} (the folder and its parents must be reachable by "
                                f"user {user or 'this user'}; choose another --root):\n{result.stderr.strip()}")

    def _write_hba(self, user: str | None) -> None:
        """Who may connect: the superuser over the private socket folder only; the role with its password from
        this machine's and its directly attached networks (the server listens on ``host`` alone anyway)."""
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"local all {SERVICE_USER} trust\n"
                       f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
                       f"host all {ROLE} samenet scram-sha-256\n")
        _own(hba, user, mode=0o600)

    def _psql(self, binaries: Path, user: str | None, sql: str) -> str:
        psql = shutil.which("psql", path=str(binaries)) or "psql"
        result = subprocess.run([psql, "-h", str(self.sockets), "-p", str(self.port), "-U", SERVICE_USER, "-d",
                                 "postgres", "-v", "ON_ERROR_STOP=1", "-tA", "-f", "-"],
                                input=sql, user=user, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PostgresError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def _create_role_and_databases(self, binaries: Path, user: str | None) -> None:
        password = self.pgpass.read_text().strip().split(":", 4)[4]
        quoted = password.replace("'", "''")
        if not self._psql(binaries, user, f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}';"):
            self._psql(binaries, user, f"CREATE ROLE {ROLE} LOGIN PASSWORD '{quoted}';")
        for database in DATABASES:
            self.create_database(database)

    def create_database(self, name: str) -> str:
        """An (empty) database owned by the role, unless it exists; its URL."""
        if not name.isidentifier():
            raise PostgresError(f"database names here are plain identifiers, got {name!r}")
        binaries, user = bin_dir(), _service_user()
        if not self._psql(binaries, user, f"SELECT 1 FROM pg_database WHERE datname = '{name}';"):
            self._psql(binaries, user, f"CREATE DATABASE {name} OWNER {ROLE};")
        return self.url(name)

    def _ready(self, binaries: Path) -> bool:
        result = subprocess.run([str(binaries / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
                                capture_output=True, check=False)
        return result.returncode == 0


def _service_user() -> str | None:
    """The user the server runs as: ``postgres`` under root (it refuses root), else whoever runs this."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgresError(f"running as root needs the {SERVICE_USER!r} user that Debian's postgresql package "
                            "creates (PostgreSQL refuses to run as root); install it or run as a normal user") from None
    return SERVICE_USER


def _own(path: Path, user: str | None, mode: int) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)
