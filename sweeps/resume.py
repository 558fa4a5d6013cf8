"""``--resume``: find the interrupted sweep, make its saved state loadable, and list the trials that already ended.

A driver can die at any instant (``kill -9``, a lost head node). What survives is: Tune's experiment state (saved
every second here, ``TUNE_GLOBAL_CHECKPOINT_S``), each trial's persisted checkpoints, the Optuna journal, and the MLflow
runs. They can disagree by the last instant before the kill; the pieces that reconcile them are:

* here: :func:`ended_trials` -- trials MLflow already closed (FINISHED or KILLED) whose Tune state was not saved
  yet; the trainable re-reports their final metrics instead of training again;
* :mod:`sweeps.trainable` -- a trial resumes from its newest persisted checkpoint, not the one Tune remembers;
* :mod:`sweeps.search` -- Optuna trials are never told twice; ones Tune never recorded are adopted;
* :mod:`sweeps.tracking` -- MLflow runs are re-adopted by trial id; ones left RUNNING are closed.

The storage path is a local (shared) folder or an object-store URI (``s3://bucket/sweeps``, read through pyarrow's
filesystems: credentials and endpoint from the ``AWS_*`` environment, or ``?endpoint_override=...&scheme=http`` in
the URI, whose query :func:`storage_join` keeps at the end); an object store's puts are atomic, so only a local
experiment state can be found truncated (:func:`repair_experiment_state`).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from bap import metrics as M
from sweeps import _ray_compat
from sweeps.config import ConfigError

logger = logging.getLogger(__name__)

TUNER_FILE = "tuner.pkl"  # what Tuner.can_restore looks for; its age orders the sweeps
STATE_GLOB = "experiment_state-*.json"
OBJECT_STORES = ("s3", "gcs", "abfs")  # pyarrow filesystems whose first path segment is a bucket (container)


def storage_join(storage_path: str, *names: str) -> str:
    """``<storage_path>/<name>/...`` for a local folder or an object-store URI; a URI's query
    (``s3://bucket/sweeps?endpoint_override=host:9000&scheme=http``) stays at its end."""
    base, sep, query = storage_path.partition("?") if "://" in storage_path else (storage_path, "", "")
    return "/".join([base.rstrip("/"), *(n.strip("/") for n in names)]) + sep + query


def shown(storage_path: str) -> str:
    """``storage_path`` for messages: a URI's credentials (``s3://KEY:SECRET@bucket/...``) left out."""
    scheme, sep, rest = storage_path.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return storage_path
    return f"{scheme}://***@{netloc.rsplit('@', 1)[1]}{slash}{path}"


def check_storage(storage_path: str) -> None:
    """An object-store ``--storage-path`` answers and its bucket exists (a local folder Tune creates itself).

    Raises:
        ConfigError: the endpoint cannot be reached, the credentials are refused, or there is no such bucket.
    """
    import pyarrow.fs as pafs

    if "://" not in storage_path:
        return
    try:
        fs, root = _fs_and_path(storage_path)
        if isinstance(fs, pafs.LocalFileSystem):
            return
        bucket = root.strip("/").split("/", 1)[0] if fs.type_name in OBJECT_STORES else None
        found = fs.get_file_info(bucket or root).type
    except Exception as exc:  # noqa: BLE001  (pyarrow: ArrowInvalid for a bad URI, OSError from the store)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"--storage-path {shown(storage_path)}: cannot open it ({first}); check the endpoint and "
                          "the credentials (the AWS_* environment, or the URI's ?endpoint_override=...)") from None
    if bucket and found != pafs.FileType.Directory:
        raise ConfigError(f"--storage-path {shown(storage_path)}: there is no bucket {bucket!r}; create it first")


def _fs_and_path(storage_path: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" in storage_path:
        return pafs.FileSystem.from_uri(storage_path)
    return pafs.LocalFileSystem(), storage_path


def list_sweeps(storage_path: str, prefix: str | None = None) -> list[tuple[float, str]]:
    """(mtime, name) of every sweep folder under ``storage_path`` holding a Tune experiment, newest first."""
    import pyarrow.fs as pafs

    fs, root = _fs_and_path(storage_path)
    try:
        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except Exception:
        return []
    out = []
    for e in entries:
        name = Path(e.path).name
        if e.type != pafs.FileType.Directory or (prefix and not name.startswith(prefix)):
            continue
        if sweep_exists(storage_path, name):
            info = fs.get_file_info(f"{e.path}/{TUNER_FILE}")
            out.append((info.mtime.timestamp() if info.mtime else 0.0, name))
    return sorted(out, reverse=True)


def sweep_exists(storage_path: str, name: str) -> bool:
    """True if ``<storage_path>/<name>`` holds a Tune experiment that ``Tuner.restore`` can continue (Ray Tune is
    imported only when the folder exists: a new sweep's validation stays light)."""
    import pyarrow.fs as pafs

    fs, root = _fs_and_path(storage_path)
    if fs.get_file_info(f"{root.rstrip('/')}/{name}").type != pafs.FileType.Directory:
        return False
    from ray.tune import Tuner

    return Tuner.can_restore(storage_join(storage_path, name))


def find_sweep_to_resume(storage_path: str, preset: str, name: str | None) -> str:
    """The sweep name ``--resume`` continues: ``name`` if given, else the newest ``<preset>-*`` sweep."""
    if name:
        if not sweep_exists(storage_path, name):
            raise ConfigError(f"--resume: no sweep {name!r} under {shown(storage_path)} (no {TUNER_FILE}); "
                              "drop --resume to start it")
        return name
    found = list_sweeps(storage_path, prefix=f"{preset}-")
    if not found:
        raise ConfigError(f"--resume: no {preset} sweep under {shown(storage_path)}; drop --resume to start one, or "
                          "give --name and --storage-path of the sweep to continue")
    return found[0][1]


def repair_experiment_state(experiment_dir: str) -> bool:
    """If the newest ``experiment_state-*.json`` is truncated (a kill during its copy to storage), put back the
    driver's local staging copy of it (under the running Ray's session folders, ``--temp-dir`` included). Returns
    True if a file was replaced. Local storage only."""
    root = _ray_compat.ray_temp_root()
    if "://" in experiment_dir or root is None:
        return False
    files = sorted(glob.glob(os.path.join(experiment_dir, STATE_GLOB)))
    if not files:
        return False
    newest = files[-1]
    try:
        json.loads(Path(newest).read_text())
        return False
    except (OSError, ValueError):
        pass
    name = Path(experiment_dir).name
    pattern = os.path.join(glob.escape(root), "session_*", "artifacts", "*", name, "driver_artifacts", Path(newest).name)
    for cand in sorted(glob.glob(pattern), key=os.path.getmtime, reverse=True):
        try:
            json.loads(Path(cand).read_text())
        except (OSError, ValueError):
            continue
        shutil.copyfile(cand, newest)
        logger.warning("Replaced a truncated %s with the driver's staging copy", Path(newest).name)
        return True
    return False


def ended_trials(child_runs: list[Any]) -> dict[str, dict[str, float]]:
    """Trial id -> last metrics of every child run MLflow already closed as FINISHED or KILLED.

    Handed to the trainable: if Tune's saved state still shows such a trial unfinished, the trial re-reports these
    metrics and returns rather than training again.
    """
    out: dict[str, dict[str, float]] = {}
    for run in child_runs:
        tid = run.data.tags.get(M.TAG_TRIAL_ID)
        if not tid or run.info.status not in ("FINISHED", "KILLED"):
            continue
        metrics = dict(run.data.metrics)
        if run.info.status == "KILLED":
            metrics.pop(M.PRUNED_AGREEMENT, None)
        out[tid] = metrics
    return out


def logged_epochs(child_runs: list[Any]) -> dict[str, float]:
    """Trial id -> the last epoch its MLflow run holds. A resumed trial re-reports the epochs after it (from its
    checkpoint's history), so metrics a dead driver had not written yet are not lost."""
    out = {}
    for run in child_runs:
        tid = run.data.tags.get(M.TAG_TRIAL_ID)
        if tid:
            out[tid] = float(run.data.metrics.get(M.EPOCH, 0.0))
        prev = run.data.tags.get(M.TAG_PREVIOUS_TRIAL)
        if prev:
            out.setdefault(prev, float(run.data.metrics.get(M.EPOCH, 0.0)))
    return out
