"""MLflow glue: one parent run per sweep, exactly one nested child run per Ray Tune trial, written off Tune's loop.

* :func:`check_tracking_uri` (:mod:`sweeps.reachability`, light to import) answers "can we log there?" within
  seconds, before anything starts (an unreachable server otherwise hangs a sweep for minutes in MLflow's retries).
* :class:`SweepRun` creates or re-adopts the parent run (tag ``bap.sweep_id``) and ends it.
* :class:`TrialRunLogger` is a Tune ``Callback`` on the driver. It owns each child run's whole life: created (or
  re-adopted by its ``bap.trial_id`` tag, so retries and ``--resume`` never duplicate it) when the trial starts,
  per-epoch metrics of every domain batched into ``log_batch`` calls, artifacts (``metrics.json``, the pruned model
  and its channel maps) when it completes, and the status it ended with: FINISHED, KILLED (stopped early by ASHA)
  or FAILED. All MLflow calls run on one background thread, so neither ``tune.report`` nor Tune's loop waits for a
  database write.
* On ``--resume`` the first loop step reconciles what a killed driver left behind: runs of trials Tune already
  finished are closed with the right status and their last metrics; a RUNNING run of a trial Tune never recorded
  (started in the last seconds before the kill) is taken over by the new Tune trial that adopts the same Optuna
  trial (and continues from its checkpoints), re-tagged with the new trial id; one nobody takes over is closed as
  KILLED and marked deleted when the sweep ends.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

from bap import metrics as M
from sweeps.reachability import check_tracking_uri  # noqa: F401  (part of this module's API)

logger = logging.getLogger(__name__)

TERMINAL = ("FINISHED", "FAILED", "KILLED")
# Tune's own bookkeeping keys: not training metrics.
_SKIP_KEYS = {
    "training_iteration", "time_this_iter_s", "timestamp", "pid", "done", "iterations_since_restore",
    "time_since_restore", "timesteps_since_restore", "should_checkpoint", "trial_id", "date", "hostname",
    M.TUNE_NODE_IP, "experiment_tag", "checkpoint_dir_name", "episodes_total", "timesteps_total", "experiment_id",
}
_MAX_METRICS = 1000
_MAX_NOTE = 7500  # MLflow keeps tag values up to 8000 characters
# What an unreachable or overloaded tracking server looks like from MLflow's client (after its own retries).
_OUTAGE_MARKERS = ("Max retries exceeded", "Connection refused", "Connection aborted", "Failed to establish",
                   "Read timed out", "RemoteDisconnected", "502", "503", "504", "too many 5")
_MAX_PARAMS = 100
_MAX_PARAM_LEN = 6000


# --------------------------------------------------------------------------------------------------------------
# Where runs go
# --------------------------------------------------------------------------------------------------------------
def artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: next to a SQLite file (``<dir>/mlruns/<experiment>``); else the
    server's default (None). Without this MLflow would write ``./mlruns`` relative to each process's cwd."""
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent / "mlruns" / experiment
        return folder.resolve().as_uri()
    return None


@contextlib.contextmanager
def first_use_lock(uri: str) -> Iterator[None]:
    """Around a process's first call to a SQLite tracking store: an exclusive lock on ``<file>.lock``, so that two
    sweeps started at once against a new store do not both create its schema (MLflow's migration then fails in one
    of them: "Online migration expected to match one row ... 0 found"). Other stores need no lock."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock = Path(uri[len("sqlite:///") :] + ".lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def get_or_create_experiment(client: Any, name: str, uri: str) -> str:
    """The experiment's id, created if new; tagged as a model-training experiment (the UI view MLflow 3 opens)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if exp.tags.get(M.TAG_EXPERIMENT_KIND) is None:
            client.set_experiment_tag(exp.experiment_id, M.TAG_EXPERIMENT_KIND, M.EXPERIMENT_KIND_TRAINING)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri, name),
                                        tags={M.TAG_EXPERIMENT_KIND: M.EXPERIMENT_KIND_TRAINING})
    except Exception:
        exp = client.get_experiment_by_name(name)  # created concurrently
        if exp is None:
            raise
        return exp.experiment_id


def _tag_filter(tags: Mapping[str, str]) -> str:
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def search_all_runs(client: Any, experiment_id: str, filter_string: str, view: str = "active_only") -> list[Any]:
    from mlflow.entities import ViewType

    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token,
                                  run_view_type=ViewType.from_string(view))
        out.extend(page)
        token = page.token
        if not token:
            return out


def flatten_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    return M.param_text(values, prefix, _MAX_PARAM_LEN)


def trial_run_name(config: Mapping[str, Any], fixed: Mapping[str, Any]) -> str:
    """A trial run's name from what its trials differ in most: ``β=0.50 jaccard w=0.3`` (budget, sharing loss and
    its weight; the weight left out for ``none``). The trial's own config first, else the sweep's fixed settings."""
    def value(key: str) -> Any:
        return config.get(key, fixed.get(key))

    parts = []
    if value(M.BUDGET) is not None:
        parts.append(f"β={float(value(M.BUDGET)):.2f}")
    sharing = value("sharing")
    if sharing is not None:
        parts.append(str(sharing))
        if sharing != "none" and value("sharing_weight") is not None:
            parts.append(f"w={float(value('sharing_weight')):.2g}")
    return " ".join(parts)


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name #2``, ``#3``... if a run of the sweep already has it (Optuna may sample twice alike)."""
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        candidate = f"{name} #{count}"
    return candidate


def log_params(client: Any, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), _MAX_PARAMS):
        client.log_batch(run_id, params=items[i : i + _MAX_PARAMS])


def numeric_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The training metrics in a Tune result: numbers (not bools), minus Tune's bookkeeping and config."""
    out = {}
    for k, v in result.items():
        if k in _SKIP_KEYS or k.startswith("config/") or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        out[k] = float(v)
    return out


# --------------------------------------------------------------------------------------------------------------
# Parent run
# --------------------------------------------------------------------------------------------------------------
class SweepRun:
    """The sweep's parent run: created once, re-adopted (by ``bap.sweep_id``) on ``--resume``."""

    def __init__(self, uri: str, experiment: str, sweep_id: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.experiment_name = experiment
        self.sweep_id = sweep_id
        with first_use_lock(uri):  # the first use creates a new SQLite store's schema
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment_id = get_or_create_experiment(self.client, experiment, uri)
        self.run_id: str | None = None
        self.adopted = False
        self.ended: str | None = None  # the status it was ended with

    def start(self, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        found = search_all_runs(self.client, self.experiment_id,
                                _tag_filter({M.TAG_SWEEP_ID: self.sweep_id, M.TAG_ROLE: M.ROLE_SWEEP}))
        if found:
            run = sorted(found, key=lambda r: r.info.start_time)[0]
            self.run_id, self.adopted = run.info.run_id, True
            if run.info.status != "RUNNING":
                self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, M.TAG_RESUMED_AT, time.strftime("%Y-%m-%d %H:%M:%S"))
            return self.run_id
        all_tags = {M.TAG_SWEEP_ID: self.sweep_id, M.TAG_ROLE: M.ROLE_SWEEP, **tags}
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=self.sweep_id)
        self.run_id = run.info.run_id
        log_params(self.client, self.run_id, flatten_params(params))
        return self.run_id

    def log_artifact_text(self, name: str, text: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def set_note(self, markdown: str) -> None:
        """The run's description, as MLflow's UI shows it at the top of the run's page."""
        if len(markdown) > _MAX_NOTE:
            markdown = markdown[: _MAX_NOTE - 60].rsplit("\n", 1)[0] + f"\n\n(cut; the whole summary: {M.SUMMARY_FILE})"
        self.client.set_tag(self.run_id, M.TAG_NOTE, markdown)

    def log_metrics(self, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, 0) for k, v in values.items()]
        for i in range(0, len(items), _MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=items[i : i + _MAX_METRICS])

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id, status=status)
            self.ended = status

    def child_runs(self, view: str = "active_only") -> list[Any]:
        return search_all_runs(self.client, self.experiment_id,
                               _tag_filter({M.TAG_SWEEP_ID: self.sweep_id, M.TAG_ROLE: M.ROLE_TRIAL}), view)


# --------------------------------------------------------------------------------------------------------------
# Child runs: the Tune callback and its background writer
# --------------------------------------------------------------------------------------------------------------
@dataclass
class TrialInfo:
    """What the writer needs to know about a Tune trial (a plain snapshot: Trial objects stay on Tune's thread)."""

    trial_id: str
    name: str
    status: str
    config: dict[str, Any]
    last_result: dict[str, Any]
    train_dir: tuple[Any, str] | None  # (pyarrow filesystem, path) of the trial's train/ folder
    error: str | None = None
    num_failures: int = 0


@dataclass
class _RunState:
    run_id: str
    frozen: bool  # ended (by us or a previous driver): no further writes
    last_epoch: float = -math.inf
    pending: list[Any] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)


def storage_filesystem(storage_path: str) -> Any:
    """The pyarrow filesystem of a sweep's storage path (a local folder or an object-store URI)."""
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(storage_path)[0] if "://" in storage_path else pafs.LocalFileSystem()


def _error_text(trial: Any) -> str | None:
    try:
        return Path(trial.error_file).read_text()[-4000:] if trial.error_file else None
    except (OSError, TypeError):
        return None


def snapshot(trial: Any, filesystem: Any = None) -> TrialInfo:
    """What the writer needs of a Tune ``Trial`` (its public properties), taken on Tune's thread. ``filesystem``:
    the sweep storage's, where ``trial.path`` lies (None: no artifacts are logged)."""
    path = getattr(trial, "path", None)
    return TrialInfo(
        trial_id=trial.trial_id,
        name=str(trial),
        status=trial.status,
        config=dict(trial.config or {}),
        last_result=dict(trial.last_result or {}),
        train_dir=(filesystem, f"{path}/{M.TRAIN_DIR}") if filesystem is not None and path else None,
        error=_error_text(trial),
        num_failures=int(getattr(trial, "num_failures", 0) or 0),
    )


class TrialRunLogger(Callback):
    """Tune callback: one MLflow child run per trial, under the sweep's parent run, written on a background thread.

    Args:
        tracking_uri, experiment_id, parent_run_id, sweep_id: where the runs go.
        fixed_params: training settings shared by every trial (logged as params with the trial's own config).
        tags: extra tags on every child run (e.g. ``bap.preset``).
        storage_path: the sweep's Tune storage path, where each trial's ``train/`` outputs are (logged as artifacts
            when it completes); None: no artifacts.
        end_timeout_s: how long a trial's end waits for its MLflow writes (with ``wait_for_end``).
        wait_for_end: block Tune's loop until a trial's end is written (off by default: reconciled on resume).
        outage_limit_s: how long a write waits for an unreachable tracking server to come back, retrying, before
            it is given up (counted in ``stats["writes_given_up"]``). Writes are never dropped sooner: Tune's loop
            only queues them, so trials keep training through an outage.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, sweep_id: str, *,
                 fixed_params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None,
                 storage_path: str | None = None, end_timeout_s: float = 60.0,
                 flush_interval_s: float = 0.5, wait_for_end: bool = False, outage_limit_s: float = 600.0) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.fixed_params = dict(fixed_params or {})
        self.tags = dict(tags or {})
        self.storage_path = storage_path
        self._filesystem: Any = None
        self.end_timeout_s = end_timeout_s
        self.wait_for_end = wait_for_end
        self.flush_interval_s = flush_interval_s
        self.outage_limit_s = outage_limit_s
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._runs: dict[str, _RunState] = {}
        self._reconciled = False
        self.errors: list[str] = []
        self.stats = {"log_batch_calls": 0, "metrics_logged": 0, "runs_created": 0, "runs_adopted": 0,
                      "runs_closed_on_reconcile": 0, "orphans_adopted": 0, "orphans_closed": 0, "busy_s": 0.0,
                      "outages": 0, "outage_s": 0.0, "writes_given_up": 0}
        self._orphans: dict[tuple, Any] = {}
        self._names: set[str] = set()  # the sweep's trial run names so far (kept unique)

    # Tune pickles callbacks into tuner.pkl: keep only configuration.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_queue=None, _thread=None, _runs={}, _reconciled=False, errors=[], _orphans={}, _filesystem=None,
                     _names=set())
        return state

    # --- Tune hooks (driver thread: enqueue only) -----------------------------------------------------------------
    def _snapshot(self, trial: Any) -> TrialInfo:
        if self._filesystem is None and self.storage_path:
            self._filesystem = storage_filesystem(self.storage_path)
        return snapshot(trial, self._filesystem)

    def setup(self, **info: Any) -> None:
        self._start_thread()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not self._reconciled:
            self._reconciled = True
            self._submit(("reconcile", [self._snapshot(t) for t in trials]))

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._submit(("start", self._snapshot(trial)))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        epoch = result.get(M.EPOCH, result.get("training_iteration"))
        self._submit(("metrics", trial.trial_id, epoch, numeric_metrics(result), result.get(M.TUNE_NODE_IP)))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._submit(("restart", self._snapshot(trial)))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        info_ = self._snapshot(trial)
        status = "FINISHED" if M.is_finished(info_.last_result) else "KILLED"
        self._end_submitted(self._submit(("end", info_, status)))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end_submitted(self._submit(("end", self._snapshot(trial), "FAILED")))

    def _end_submitted(self, done: threading.Event) -> None:
        # Not waited for by default: Tune's loop moves on to the next trial at once. If the driver dies before
        # the write, the next --resume closes the run from Tune's saved state (see _reconcile).
        if self.wait_for_end:
            self._wait(done)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def _start_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="mlflow-trial-logger")
        self._thread.start()

    def _submit(self, op: tuple) -> threading.Event:
        if self._thread is None:
            self._start_thread()
        done = threading.Event()
        self._queue.put((op, done))
        return done

    def _wait(self, done: threading.Event) -> None:
        if not done.wait(self.end_timeout_s):
            logger.warning("MLflow writes for a finished trial took over %.0f s; continuing", self.end_timeout_s)

    def flush(self, timeout: float = 120.0) -> bool:
        """Wait until everything queued so far is written."""
        if self._thread is None:
            return True
        return self._submit(("noop",)).wait(timeout)

    def close(self, timeout: float = 120.0) -> None:
        if self._thread is None:
            return
        done = self._submit(("stop",))
        done.wait(timeout)
        self._thread.join(timeout=5)
        self._thread = None

    # --- writer thread -----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        from mlflow import MlflowClient

        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        try:
            self._load_existing()
        except Exception as exc:
            self._error(f"could not list existing trial runs: {exc}")
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=self.flush_interval_s)
            except queue.Empty:
                continue
            batch = [first]
            time.sleep(0.05)  # let a burst of results accumulate into one batch
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events = []
            busy = time.perf_counter()
            for op, done in batch:
                events.append(done)
                if op[0] == "stop":
                    stop = True
                    try:
                        self._close_orphans()
                    except Exception as exc:
                        self._error(f"closing orphaned runs: {exc}")
                    continue
                try:
                    self._through_outages(lambda op=op: self._apply(op))
                except Exception as exc:  # MLflow trouble must never take the sweep down
                    self._error(f"{op[0]}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                if op[0] in ("end", "noop", "reconcile"):
                    self._safe_flush()  # everything before an end/flush is on disk when its event fires
            self._safe_flush()
            self.stats["busy_s"] += time.perf_counter() - busy
            for done in events:
                done.set()

    def _safe_flush(self) -> None:
        try:
            self._through_outages(self._flush_all)
        except Exception as exc:
            self._error(f"log_batch: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            for state in self._runs.values():
                self.stats["writes_given_up"] += len(state.pending)
                state.pending.clear()  # a write the server rejects, or an outage past outage_limit_s

    def _through_outages(self, write: Any) -> None:
        """``write()``, retried with a growing pause while the tracking server cannot be reached, for up to
        ``outage_limit_s``; any other error is raised at once. (MLflow's client retries each request for a few
        minutes first; this covers what it gives up on, and counts the outage.)"""
        began, pause = None, 1.0
        while True:
            try:
                write()
            except Exception as exc:
                if not _is_outage(exc):
                    raise
                began = time.monotonic() if began is None else began
                if time.monotonic() - began > self.outage_limit_s:
                    raise
                logger.warning("MLflow server unreachable; retrying in %.0f s (%s)", pause, type(exc).__name__)
                time.sleep(pause)
                pause = min(pause * 2, 15.0)
                continue
            if began is not None:
                self.stats["outages"] += 1
                self.stats["outage_s"] += time.monotonic() - began
            return

    def _error(self, message: str) -> None:
        if len(self.errors) < 100:
            self.errors.append(message)
        logger.warning("MLflow: %s", message)

    def _load_existing(self) -> None:
        """Index the sweep's existing child runs by Tune trial id (adopted on start instead of duplicated)."""
        runs = search_all_runs(self._client, self.experiment_id,
                               _tag_filter({M.TAG_SWEEP_ID: self.sweep_id, M.TAG_ROLE: M.ROLE_TRIAL}))
        self._existing: dict[str, Any] = {}
        self._names.update(run.info.run_name for run in runs if run.info.run_name)
        for run in sorted(runs, key=lambda r: r.info.start_time):
            tid = run.data.tags.get(M.TAG_TRIAL_ID)
            if tid and tid not in self._existing:
                self._existing[tid] = run

    def _apply(self, op: tuple) -> None:
        kind = op[0]
        if kind == "start":
            self._ensure_run(op[1])
        elif kind == "metrics":
            self._queue_metrics(op[1], op[2], op[3])
            self._note_node(op[1], op[4])
        elif kind == "restart":
            info: TrialInfo = op[1]
            state = self._ensure_run(info)
            if state and not state.frozen:
                self._client.set_tag(state.run_id, M.TAG_RESTARTS, str(info.num_failures))
        elif kind == "end":
            self._end(op[1], op[2])
        elif kind == "reconcile":
            self._reconcile(op[1])

    def _ensure_run(self, info: TrialInfo) -> _RunState | None:
        if info.trial_id in self._runs:
            return self._runs[info.trial_id]
        existing = getattr(self, "_existing", {}).get(info.trial_id)
        orphan_key = (info.config.get(M.OPTUNA_STUDY_KEY), str(info.config.get(M.OPTUNA_TRIAL_KEY)))
        if existing is None and info.config.get(M.RESUME_TRIAL_KEY) and orphan_key in self._orphans:
            existing = self._orphans.pop(orphan_key)  # continue the dead driver's run of this Optuna trial
            self._client.set_tag(existing.info.run_id, M.TAG_TRIAL_ID, info.trial_id)
            self._client.set_tag(existing.info.run_id, M.TAG_PREVIOUS_TRIAL, existing.data.tags.get(M.TAG_TRIAL_ID))
            if info.train_dir is not None:
                self._client.set_tag(existing.info.run_id, M.TAG_TRAIN_DIR, info.train_dir[1])
            self.stats["orphans_adopted"] += 1
        if existing is not None:
            state = _RunState(existing.info.run_id, frozen=existing.info.status in TERMINAL,
                              last_epoch=existing.data.metrics.get(M.EPOCH, -math.inf))
            self.stats["runs_adopted"] += 1
            self._runs[info.trial_id] = state
            return state
        budget = info.config.get(M.BUDGET)
        tags = {
            M.TAG_PARENT_RUN: self.parent_run_id,
            M.TAG_SWEEP_ID: self.sweep_id,
            M.TAG_ROLE: M.ROLE_TRIAL,
            M.TAG_TRIAL_ID: info.trial_id,
            **self.tags,
        }
        if budget is not None:
            tags[M.TAG_BUDGET] = f"{float(budget):g}"
        sharing = info.config.get("sharing", self.fixed_params.get("sharing"))
        if sharing is not None:
            tags[M.TAG_SHARING] = str(sharing)
        for key, tag in ((M.OPTUNA_STUDY_KEY, M.TAG_OPTUNA_STUDY), (M.OPTUNA_TRIAL_KEY, M.TAG_OPTUNA_TRIAL)):
            if key in info.config:
                tags[tag] = str(info.config[key])
        if info.train_dir is not None:
            tags[M.TAG_TRAIN_DIR] = info.train_dir[1]
        name = unique_name(trial_run_name(info.config, self.fixed_params) or info.trial_id, self._names)
        run = self._client.create_run(self.experiment_id, tags=tags, run_name=name)
        self._names.add(name)
        state = _RunState(run.info.run_id, frozen=False)
        self._runs[info.trial_id] = state
        self.stats["runs_created"] += 1
        params = {**self.fixed_params, **{k: v for k, v in info.config.items() if k != M.OPTUNA_STUDY_KEY}}
        log_params(self._client, state.run_id, flatten_params(params))
        return state

    def _note_node(self, trial_id: str, node: str | None) -> None:
        """Tag the run with the nodes its trial has run on, when that list grows."""
        state = self._runs.get(trial_id)
        if state is None or state.frozen or not node or (state.nodes and state.nodes[-1] == node):
            return
        state.nodes.append(node)
        self._client.set_tag(state.run_id, M.TAG_NODES, ",".join(state.nodes))

    def _queue_metrics(self, trial_id: str, epoch: Any, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        state = self._runs.get(trial_id)
        if state is None or state.frozen or epoch is None:
            return
        epoch = float(epoch)
        if epoch <= state.last_epoch:
            return  # a resumed trial re-reporting an epoch already logged
        state.last_epoch = epoch
        ts = int(time.time() * 1000)
        step = int(epoch)
        state.pending.extend(Metric(k, v, ts, step) for k, v in values.items())
        state.pending.extend(Metric(short, values[full], ts, step) for short, full in M.HEADLINE_METRICS.items()
                             if full in values)

    def _flush_all(self) -> None:
        for state in self._runs.values():
            while state.pending:
                chunk = state.pending[:_MAX_METRICS]
                self._client.log_batch(state.run_id, metrics=chunk)
                del state.pending[:len(chunk)]  # only once written: an outage keeps them for the retry
                self.stats["log_batch_calls"] += 1
                self.stats["metrics_logged"] += len(chunk)

    def _end(self, info: TrialInfo, status: str) -> None:
        state = self._ensure_run(info)
        if state is None or state.frozen:
            return
        if info.last_result:
            self._queue_metrics(info.trial_id, info.last_result.get(M.EPOCH), numeric_metrics(info.last_result))
        self._flush_all()
        tags = {}
        if status == "KILLED":
            tags[M.TAG_STOPPED_EARLY] = "true"
        if status == "FAILED" and info.error:
            tags[M.TAG_ERROR] = info.error.strip().splitlines()[-1][:500] if info.error.strip() else "error"
            self._client.log_text(state.run_id, info.error, M.ERROR_FILE)
        for k, v in tags.items():
            self._client.set_tag(state.run_id, k, v)
        if info.num_failures:
            self._client.set_tag(state.run_id, M.TAG_RESTARTS, str(info.num_failures))
        self._log_artifacts(state.run_id, info)
        self._client.set_terminated(state.run_id, status=status)
        state.frozen = True

    def _log_artifacts(self, run_id: str, info: TrialInfo) -> None:
        if info.train_dir is None:
            return
        fs, path = info.train_dir
        try:
            with _local_copy(fs, path, (M.METRICS_FILE, M.TRIAL_CONFIG_FILE, M.PRUNED_DIR)) as local:
                if local is None:
                    return
                for name in (M.METRICS_FILE, M.TRIAL_CONFIG_FILE):
                    if (local / name).is_file():
                        self._client.log_artifact(run_id, str(local / name))
                if (local / M.PRUNED_DIR).is_dir():
                    self._client.log_artifacts(run_id, str(local / M.PRUNED_DIR), M.PRUNED_DIR)
        except Exception as exc:
            self._error(f"artifacts of {info.trial_id}: {exc}")

    def _reconcile(self, trials: Iterable[TrialInfo]) -> None:
        """Close what a dead driver left RUNNING (see module docstring)."""
        trials = list(trials)
        known = {t.trial_id for t in trials}
        existing = getattr(self, "_existing", {})
        for info in trials:
            run = existing.get(info.trial_id)
            if run is None or run.info.status != "RUNNING":
                continue
            if info.status in ("TERMINATED", "ERROR"):
                status = "FAILED" if info.status == "ERROR" else (
                    "FINISHED" if M.is_finished(info.last_result) else "KILLED")
                self._end(info, status)
                self.stats["runs_closed_on_reconcile"] += 1
        for tid, run in existing.items():
            if tid in known or run.info.status != "RUNNING":
                continue
            # Tune never recorded this trial; the searcher hands its Optuna trial to a new Tune trial, which
            # adopts this run (see _ensure_run). Runs nobody adopts are closed when the sweep ends.
            key = (run.data.tags.get(M.TAG_OPTUNA_STUDY), run.data.tags.get(M.TAG_OPTUNA_TRIAL))
            self._orphans[key] = run

    def _close_orphans(self) -> None:
        for run in self._orphans.values():
            self._client.set_tag(run.info.run_id, M.TAG_ORPHANED,
                                 "Tune never recorded this trial before its driver stopped, and no new trial "
                                 "took it over")
            self._client.set_terminated(run.info.run_id, status="KILLED")
            self._client.delete_run(run.info.run_id)
            self.stats["orphans_closed"] += 1
        self._orphans.clear()


def _is_outage(exc: BaseException) -> bool:
    """True if ``exc`` (or what caused it) says the server could not be reached, not that it refused the write."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ConnectionError, TimeoutError)) or any(m in str(seen) for m in _OUTAGE_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _local_copy:
    """Context manager: a local folder with ``names`` from ``(fs, path)`` (the folder itself when it is local)."""

    def __init__(self, fs: Any, path: str, names: Iterable[str]) -> None:
        self.fs, self.path, self.names = fs, path, list(names)
        self.tmp: str | None = None

    def __enter__(self) -> Path | None:
        import pyarrow.fs as pafs

        if isinstance(self.fs, pafs.LocalFileSystem):
            p = Path(self.path)
            return p if p.is_dir() else None
        self.tmp = tempfile.mkdtemp(prefix="bap-artifacts-")
        found = False
        for name in self.names:
            src = f"{self.path}/{name}"
            info = self.fs.get_file_info(src)
            if info.type == pafs.FileType.NotFound:
                continue
            found = True
            dst = Path(self.tmp, name)
            if info.type == pafs.FileType.Directory:
                dst.mkdir(parents=True)  # pyarrow copies a folder's files, not the folder itself
            pafs.copy_files(src, str(dst), source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem())
        return Path(self.tmp) if found else None

    def __exit__(self, *exc: Any) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
