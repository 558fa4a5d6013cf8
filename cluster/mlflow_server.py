"""The MLflow tracking server the nodes share: runs in PostgreSQL, artifacts in a folder every node reaches.

Started lean (measured on 2 cores: ~7 s and ~570 MB instead of ~17 s and ~3.6 GB): one worker and no job
execution, which a sweep never uses. Artifacts are proxied (``--serve-artifacts``), so trials need no access to
the artifact folder itself, only to the server.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from cluster import processes


class MlflowServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class MlflowServer:
    root: Path
    host: str
    port: int
    backend_store_uri: str  # no password in it: PostgreSQL's comes from $PGPASSFILE
    artifacts: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "mlflow.log"

    def start(self, pgpass: Path, timeout: float = 120.0) -> int:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_store_uri,
               "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
               "--host", self.host, "--port", str(self.port), "--workers", "1"]
        env = processes.environ(PGPASSFILE=str(pgpass), MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        pid = processes.spawn(cmd, self.log, env=env, cwd=self.root).pid
        healthy = processes.wait_for(lambda: self.healthy() or not processes.alive(pid), timeout, interval=0.5)
        if not healthy or not processes.alive(pid):
            processes.stop(pid)
            raise MlflowServerError(f"the MLflow server did not answer on {self.url} within {timeout:g} s:\n"
                                    f"{processes.log_tail(self.log)}")
        return pid

    def healthy(self) -> bool:
        return processes.http_ok(self.url + "/health")

    @staticmethod
    def stop(pid: int | None) -> bool:
        return processes.stop(pid, signal.SIGTERM, 20.0)
