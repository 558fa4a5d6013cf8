"""One rehearsal (3 Ray nodes in network namespaces, PostgreSQL, an MLflow server) shared by the fault tests.

It needs PostgreSQL's binaries (the README's test command installs them with apt) and, for namespaces, root; the
tests never skip for lack of them on a machine like CI's -- a missing PostgreSQL fails loudly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bap import metrics as M
from cluster.rehearse import MemoryPeak, Rehearsal

# Trials long enough to be caught mid-run (tens of seconds on 2 cores), short enough for CI.
LONG_TRIALS = ["--no-asha", "--epochs", "8", "--set", "steps_per_epoch=24"]


HOME_STATE: dict[str, object] = {}


def _home_ray_state() -> dict[str, float]:
    """The user's ``~/.ray`` files and their modification times (the rehearsal must leave them alone)."""
    folder = Path.home() / ".ray"
    return {p.name: p.stat().st_mtime for p in folder.iterdir()} if folder.is_dir() else {}


@pytest.fixture(scope="package")
def say(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Print a line to the terminal past pytest's capture: what each fault did ends up in CI's log."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(f"[rehearsal] {line}")

    return write


@pytest.fixture(scope="package")
def rehearsal(say: Callable[[str], None]) -> Iterator[Rehearsal]:
    # Not under pytest's tmp folder: PostgreSQL runs as its own user and must reach its data, and that is 0700.
    root = Path(tempfile.mkdtemp(prefix="bap-rehearsal-"))
    root.chmod(0o755)
    HOME_STATE["ray"] = _home_ray_state()
    memory, began = MemoryPeak(), time.monotonic()
    memory.start()
    cluster = Rehearsal(root, workers=2, cpus_per_worker=1)
    cluster.up()
    os.environ["PGPASSFILE"] = str(cluster.services.postgres.pgpass)  # this process reads Optuna's studies too
    up_s = time.monotonic() - began
    try:
        yield cluster
    finally:
        cluster.down()
        shutil.rmtree(root, ignore_errors=True)
        say(f"{len(cluster.nodes)} nodes "
              f"({'network namespaces' if cluster.network else 'plain processes: ' + str(cluster.fallback_reason)}),"
              f" up in {up_s:.1f} s, {time.monotonic() - began:.0f} s in all; peak memory above idle "
              f"{memory.stop():.2f} GiB")


def mlflow_client(rehearsal: Rehearsal):  # noqa: ANN201
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=rehearsal.services.tracking_uri)


def trial_runs(rehearsal: Rehearsal, sweep: str) -> list:
    """The sweep's MLflow child runs (one per trial), from the tracking server."""
    client = mlflow_client(rehearsal)
    experiment = client.get_experiment_by_name(M.DEFAULT_EXPERIMENT)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id],
                              f"tags.`{M.TAG_SWEEP_ID}` = '{sweep}' and tags.`{M.TAG_ROLE}` = '{M.ROLE_TRIAL}'",
                              max_results=1000)
