"""Which training runs are live on this machine: what a latency measurement shared its cores with.

Every run (``bap.train``, a sweep trial, the CLI) holds a marker file in a machine-local folder while it runs
(:func:`registered_run`); :func:`other_runs` counts the markers of live processes other than the caller's own.
Markers of processes that died without removing theirs (a killed trial) are ignored and cleaned up. The folder is
``$BAP_RUNS_DIR`` or ``<tmp>/bap-runs-<uid>``: Ray nodes that share a machine (and its ``/tmp``) see each other's
runs, which is what matters for contention -- they share the cores too. Liveness is by process id
(``os.kill(pid, 0)``): nodes in separate PID namespaces (containers) sharing one ``/tmp`` should each set
``$BAP_RUNS_DIR`` to a folder of their own.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["RUNS_DIR_ENV", "other_runs", "registered_run", "runs_dir"]

RUNS_DIR_ENV = "BAP_RUNS_DIR"
_own: set[str] = set()


def runs_dir() -> Path:
    """The machine-local folder of run markers."""
    folder = os.environ.get(RUNS_DIR_ENV) or os.path.join(tempfile.gettempdir(), f"bap-runs-{os.getuid()}")
    return Path(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextlib.contextmanager
def registered_run() -> Iterator[Path]:
    """Mark this process as running a training run until the block ends."""
    folder = runs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{os.getpid()}-{uuid.uuid4().hex}"
    marker.touch()
    _own.add(marker.name)
    try:
        yield marker
    finally:
        _own.discard(marker.name)
        marker.unlink(missing_ok=True)


def other_runs() -> int:
    """How many training runs other than this process's own are live on this machine now."""
    folder = runs_dir()
    if not folder.is_dir():
        return 0
    count = 0
    for marker in folder.iterdir():
        pid_text, _, _ = marker.name.partition("-")
        if marker.name in _own or not pid_text.isdigit():
            continue
        if _alive(int(pid_text)):
            count += 1
        else:
            marker.unlink(missing_ok=True)
    return count
