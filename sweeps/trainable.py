"""The Ray Tune function trainable: one budget-aware training run (``bap.train.train``) per trial.

What it adds around the training function:

* **Shared data**: the domains are loaded once per sweep by a preparation task (:mod:`sweeps.prepare`) and reach the
  trial through Ray's object store; a worker process keeps the deserialised copy, so reused actors (Tune's
  ``reuse_actors``) do not deserialise it again. With ``data_sharing: cache`` trials read the packed on-disk cache.
* **Checkpoints**: every epoch's checkpoint directory goes to ``tune.report(metrics, checkpoint=...)`` with its epoch
  and metrics as checkpoint metadata. A (re)started trial resumes from the newest *complete* checkpoint among
  ``tune.get_checkpoint()`` and the checkpoints persisted in its trial folder -- the latter covers a driver killed
  before Tune's experiment state recorded the trial's last checkpoints (Tune would otherwise restart from epoch 0
  or from an older epoch).
* **Finished once**: a trial whose newest checkpoint is its final one (or that the driver lists as already ended in
  MLflow) re-reports its final metrics and returns without training again.
* **Outputs** go to ``<trial folder>/train/`` on the sweep storage (``metrics.json``, ``pruned/``,
  ``trial_config.json``); the MLflow callback logs them as artifacts when the trial completes.
* **Fault injection** (tests): ``BAP_SWEEP_INJECT_FAULT="epoch=2[,count=1][,mode=raise|exit]"`` in the driver's
  environment makes the first ``count`` trials (all if omitted) that reach that epoch fail once, after training it
  and before reporting it -- the retry must resume from the previous epoch's checkpoint. ``mode=exit`` kills the
  worker process instead of raising.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bap import metrics as M
from bap.entrypoint import Report, load_entrypoint
from sweeps import _ray_compat
from sweeps.faults import FAULT_ENV, parse_fault  # noqa: F401  (re-exported: the driver parses without torch)
from sweeps.space import split_trial_config

logger = logging.getLogger(__name__)

FAULT_MARKER = ".bap_fault_injected"
# Keys of a checkpoint's metadata: its epoch (M.EPOCH), that epoch's report, every report so far, its files' sizes.
CHECKPOINT_REPORT = "report"
CHECKPOINT_HISTORY = "history"
CHECKPOINT_FILE_SIZES = "files"

_DATA_CACHE: dict[str, Any] = {}  # per worker process: object ref hex -> deserialised domains


def trial_dirname_for(trial_id: str) -> str:
    return f"trial_{trial_id}"


def trial_dirname(trial: Any) -> str:
    """Short, stable trial folder names (``trial_<id>``) instead of Tune's config-laden default."""
    return trial_dirname_for(trial.trial_id)


def _claim_fault(fault: Mapping[str, Any], trial_dir: Path) -> bool:
    """True once per trial, for at most ``fault["count"]`` trials of the sweep (slots in the experiment folder)."""
    marker = trial_dir / FAULT_MARKER
    if marker.exists():
        return False
    count = fault.get("count")
    if count is not None:
        slots = trial_dir.parent / ".bap_fault_slots"
        slots.mkdir(exist_ok=True)
        for i in range(int(count)):
            try:
                os.close(os.open(slots / f"slot_{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                break
            except FileExistsError:
                continue
        else:
            return False
    marker.write_text("fault injected")
    return True


def _file_sizes(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in directory.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def _complete(checkpoint: Any, meta: Mapping[str, Any]) -> bool:
    """True if every file the checkpoint's metadata lists exists with its recorded size (no half-copied dirs)."""
    import pyarrow.fs as pafs

    sizes = meta.get(CHECKPOINT_FILE_SIZES)
    if not sizes:
        return False
    fs = checkpoint.filesystem
    for name, size in sizes.items():
        info = fs.get_file_info(f"{checkpoint.path}/{name}")
        if info.type != pafs.FileType.File or info.size != size:
            return False
    return True


def find_newest_checkpoint(tune_checkpoint: Any, fs: Any, *trial_fs_paths: str | None) -> tuple[Any, dict] | None:
    """The newest complete checkpoint (and its metadata) among Tune's and those persisted in the trial folder(s)."""
    import pyarrow.fs as pafs
    from ray.tune import Checkpoint

    candidates = []
    if tune_checkpoint is not None:
        candidates.append(tune_checkpoint)
    for folder in trial_fs_paths:
        if fs is None or not folder:
            continue
        try:
            listing = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        except Exception:
            listing = []
        for info in listing:
            if info.type == pafs.FileType.Directory and Path(info.path).name.startswith("checkpoint_"):
                candidates.append(Checkpoint(path=info.path, filesystem=fs))
    scored = []
    seen = set()
    for ck in candidates:
        if ck.path in seen:
            continue
        seen.add(ck.path)
        try:
            meta = ck.get_metadata() or {}
        except Exception:
            continue
        if M.EPOCH in meta:
            scored.append((float(meta[M.EPOCH]), ck.path == getattr(tune_checkpoint, "path", None), ck, meta))
    for _epoch, _is_tune, ck, meta in sorted(scored, key=lambda s: (s[0], s[1]), reverse=True):
        if _complete(ck, meta):
            return ck, meta
    return None


def _get_data(shared: Any) -> Any:
    """The preloaded domains from the object store, deserialised once per worker process."""
    if not shared:
        return None
    import ray

    ref = shared[0]
    key = ref.hex() if hasattr(ref, "hex") else str(id(ref))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one sweep's data at a time
        _DATA_CACHE[key] = ray.get(ref)
    return _DATA_CACHE[key]


def _write_backbone(settings: Mapping[str, Any], train_values: dict[str, Any]) -> None:
    """Make the sweep's pretrained backbone available on this node (it may have been built on another)."""
    blob = settings.get("backbone_bytes")
    path = train_values.get("pretrained")
    if not blob or not path or Path(path).is_file():
        return
    import ray

    data = ray.get(blob[0]) if isinstance(blob, list) else blob
    target = Path(tempfile.gettempdir()) / "bap-backbones" / Path(path).name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    train_values["pretrained"] = str(target)


def _copy_outputs(fs: Any, src: str, dst: str) -> None:
    """An adopted trial's outputs (``metrics.json``, ``pruned/``) from its ``train/`` folder ``src`` to this trial's
    ``dst``, both on the sweep storage ``fs`` (a local folder or an object store)."""
    import pyarrow.fs as pafs

    for name in (M.METRICS_FILE, M.PRUNED_DIR):
        kind = fs.get_file_info(f"{src}/{name}").type
        if kind == pafs.FileType.NotFound:
            continue
        # pyarrow copies a folder's files, not the folder: its destination (a local one) must exist
        fs.create_dir(f"{dst}/{name}" if kind == pafs.FileType.Directory else dst, recursive=True)
        pafs.copy_files(f"{src}/{name}", f"{dst}/{name}", source_filesystem=fs, destination_filesystem=fs)


@dataclass
class _Resume:
    """Where a (re)started trial continues: the checkpoint to resume from, after which epoch, the reports so far."""

    directory: str | None = None
    epoch: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    done: bool = False  # its final epoch was already reported: finished once, nothing to redo


def _set_threads(threads: Any) -> None:
    if int(threads or 0) > 0:
        try:
            import torch

            torch.set_num_threads(int(threads))
        except ImportError:
            pass


def _find_resume(trial_id: str, meta: Mapping[str, Any], storage: _ray_compat.TrialStorage,
                 settings: Mapping[str, Any]) -> _Resume:
    """Resume from the newest complete checkpoint of this trial (or of the dead trial it adopted); re-report the
    epochs MLflow may lack (the driver passes the last epoch each run holds; MLflow skips what it has, Optuna
    ignores a step it has)."""
    from ray import tune

    adopted = meta.get(M.RESUME_TRIAL_KEY)
    adopted_path = f"{Path(storage.trial_path).parent.as_posix()}/{trial_dirname_for(adopted)}" if adopted else None
    found = find_newest_checkpoint(tune.get_checkpoint(), storage.filesystem, storage.trial_path, adopted_path)
    if found is None:
        return _Resume()
    ck, ck_meta = found
    report = ck_meta.get(CHECKPOINT_REPORT) or {}
    history = [dict(h) for h in ck_meta.get(CHECKPOINT_HISTORY) or ([report] if report else [])]
    logged = settings.get("logged_epochs") or {}
    last_logged = float(logged.get(trial_id, logged.get(adopted, 0.0) if adopted else 0.0))
    replay = [h for h in history if float(h.get(M.EPOCH, 0)) > last_logged]
    if M.is_finished(report):
        if adopted_path and str(ck.path).startswith(adopted_path):
            _copy_outputs(storage.filesystem, f"{adopted_path}/{M.TRAIN_DIR}", f"{storage.trial_path}/{M.TRAIN_DIR}")
        for h in replay or [report]:
            tune.report(dict(h))
        return _Resume(done=True)
    for h in replay:
        tune.report({**h, M.RESUMED_FROM_EPOCH: h.get(M.RESUMED_FROM_EPOCH, 0.0)})
    directory = ck.path if storage.is_local else ck.to_directory(tempfile.mkdtemp(prefix="bap-resume-"))
    logger.info("trial %s resumes after epoch %g from %s", trial_id, float(ck_meta[M.EPOCH]), ck.path)
    return _Resume(directory, float(ck_meta[M.EPOCH]), history)


def _reporter(storage: _ray_compat.TrialStorage, resume: _Resume, fault: Mapping[str, Any] | None) -> Report:
    """``report(metrics, checkpoint_dir)`` for the training loop: each epoch to Tune with its checkpoint, the epoch,
    the report and every report so far as the checkpoint's metadata (and the injected fault, in tests)."""
    from ray import tune

    history = resume.history

    def report(metrics: dict[str, float], checkpoint_dir: Path) -> None:
        epoch = float(metrics.get(M.EPOCH, 0))
        if fault and int(epoch) == int(fault["epoch"]) and _claim_fault(fault, Path(storage.trial_path)):
            if fault["mode"] == "exit":
                os._exit(17)  # a worker crash, as far as Tune can tell
            raise RuntimeError(f"injected fault at epoch {epoch:g} ({FAULT_ENV})")
        metrics = {**metrics, M.RESUMED_FROM_EPOCH: resume.epoch}
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir))
        history.append(metrics)
        checkpoint.set_metadata({M.EPOCH: epoch, CHECKPOINT_REPORT: metrics, CHECKPOINT_HISTORY: history,
                                 CHECKPOINT_FILE_SIZES: _file_sizes(Path(checkpoint_dir))})
        tune.report(metrics, checkpoint=checkpoint)

    return report


def _upload_outputs(out_dir: Path, storage: _ray_compat.TrialStorage) -> None:
    """Outputs written on this node go next to the trial on the sweep storage."""
    import pyarrow.fs as pafs

    for name in (M.METRICS_FILE, M.TRIAL_CONFIG_FILE, M.PRUNED_DIR):
        src = out_dir / name
        if src.exists():
            pafs.copy_files(str(src), f"{storage.trial_path}/{M.TRAIN_DIR}/{name}",
                            source_filesystem=pafs.LocalFileSystem(), destination_filesystem=storage.filesystem)


def run_trial(config: dict[str, Any], settings: Mapping[str, Any], shared: Any = None) -> None:
    """Tune function trainable. ``settings``: entrypoint, fixed train values, threads, fault spec, ended trials,
    logged epochs, backbone bytes; ``shared``: the object-store reference of the preloaded domains."""
    from ray import tune

    entry = load_entrypoint(settings["entrypoint"])
    trial_id = tune.get_context().get_trial_id()
    ended = (settings.get("ended") or {}).get(trial_id)
    if ended:  # ended in MLflow under a driver that died before Tune recorded it: report and stop
        tune.report(dict(ended))
        return
    _set_threads(settings.get("threads"))
    storage = _ray_compat.trial_storage()
    out_dir = Path(storage.trial_path if storage.is_local else storage.working_dir) / M.TRAIN_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    searched, meta = split_trial_config(config)
    train_values = {**settings.get("train", {}), **searched}
    _write_backbone(settings, train_values)
    train_config = entry.TrainConfig.from_dict(train_values)
    resume = _find_resume(trial_id, meta, storage, settings)
    (out_dir / M.TRIAL_CONFIG_FILE).write_text(json.dumps(
        {"trial_id": trial_id, "train": train_config.to_dict(), **meta}, indent=1, default=str))
    if not resume.done:  # done: finished once already (by this trial, or by the dead trial it adopted)
        fault = settings.get("fault") if storage.is_local else None
        entry.train(train_config, out_dir, data=_get_data(shared), report=_reporter(storage, resume, fault),
                    resume_from=resume.directory)
    if not storage.is_local:
        _upload_outputs(out_dir, storage)
