"""Read a sweep's trials from MLflow or from a Ray Tune results folder into the trial table (:mod:`analysis.table`).

Both readers return the same columns and values for the same sweep:

* :func:`load_mlflow` pages through ``MlflowClient.search_runs`` (``max_results`` + ``page_token``) for the sweep's
  child runs -- filtered on ``tags.mlflow.parentRunId`` when the parent run is known, else on the ``bap.sweep_id`` and
  ``bap.role`` tags -- and takes each run's latest metric values, its params and its status.
* :func:`load_tune` reads every trial folder of a Tune experiment -- a local folder or an object-store URI such as
  ``s3://bucket/sweeps/<sweep>``, through pyarrow's filesystems -- ``params.json`` (the trial's configuration) and
  ``result.json`` (one JSON line per report), keeping each metric's latest value like MLflow does. Tune does not
  record why a trial ended, so its status is derived: ``FINISHED`` when the trial finished
  (:func:`bap.metrics.is_finished`: its final, pruned metrics were reported), ``FAILED`` when the folder holds
  Tune's ``error.txt``, else ``KILLED`` (stopped early by the scheduler). An object store's credentials and
  endpoint come as pyarrow takes them: the ``AWS_*`` environment (``AWS_ENDPOINT_URL`` for an S3-compatible server)
  or the URI's query (``s3://bucket/sweeps?endpoint_override=host:9000&scheme=http``).

Both drop Ray Tune's own result keys (:data:`TUNE_RESULT_KEYS`: ``training_iteration``, ``time_total_s``, ...) and
keep every other metric; :func:`analysis.table.build_table` decides the columns.

Conventions of the sweep (``sweeps/``): one MLflow parent run per sweep (tags ``bap.role=sweep``, ``bap.sweep_id``),
one child run per Tune trial (``bap.role=trial``, ``bap.sweep_id``, ``bap.trial_id``, ``mlflow.parentRunId``); Tune
results under ``<storage>/<sweep id>/<trial folder>/``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.errors import AnalysisError
from analysis.table import (
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_KILLED,
    TrialRecord,
    build_table,
    param_text,
)
from bap import metrics as M

__all__ = [
    "PARENT_RUN_TAG",
    "SweepRef",
    "TUNE_RESULT_KEYS",
    "find_sweep",
    "find_tune_experiments",
    "is_uri",
    "load_mlflow",
    "load_tune",
    "mlflow_records",
    "newest_tune_experiment",
    "trial_filter",
    "tune_experiment_name",
    "tune_records",
]

PARENT_RUN_TAG = M.TAG_PARENT_RUN  # MLflow's own nested-run tag (the old name, kept for callers)
PAGE_SIZE = 1000
# Ray Tune's own keys in every result (result.json) -- not training metrics. The sweep forwards results to MLflow
# minus most of these, so both readers drop them all and give the same columns.
TUNE_RESULT_KEYS = frozenset({
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid", "done", "iterations_since_restore",
    "time_since_restore", "timesteps_since_restore", "timesteps_total", "episodes_total", "should_checkpoint",
    "trial_id", "date", "hostname", M.TUNE_NODE_IP, "experiment_tag", "experiment_id", "checkpoint_dir_name",
    "warmup_time",
})
_RESULT_FILE = "result.json"
_PARAMS_FILE = "params.json"
_ERROR_FILES = ("error.txt", "error.pkl")
_TRIAL_ID_IN_DIR = re.compile(r"^(?:trial_([0-9a-f]+)$|.*?_([0-9a-f]{5}_\d{5})(?:_|$))")  # ours; Tune's default


@dataclass(frozen=True)
class SweepRef:
    """Where a sweep's runs are in MLflow.

    Attributes:
        tracking_uri: The tracking store.
        experiment_id: The experiment holding the runs.
        experiment_name: Its name.
        parent_run_id: The sweep's parent run (None when only child runs were found).
        sweep_id: The ``bap.sweep_id`` tag (None when the runs have none).
        sweeps_in_experiment: How many sweeps (parent runs) the experiment holds.
    """

    tracking_uri: str
    experiment_id: str
    experiment_name: str
    parent_run_id: str | None
    sweep_id: str | None
    sweeps_in_experiment: int = 1

    def describe(self) -> str:
        """A short text naming the sweep, for messages."""
        where = f"experiment {self.experiment_name!r} at {self.tracking_uri}"
        if self.sweep_id:
            return f"sweep {self.sweep_id!r} in {where}"
        return f"parent run {self.parent_run_id} in {where}" if self.parent_run_id else where


# --------------------------------------------------------------------------------------------------------------
# MLflow
# --------------------------------------------------------------------------------------------------------------


def _client(tracking_uri: str) -> Any:
    """A client for ``tracking_uri``; a SQLite file that does not exist is an error (MLflow would create it)."""
    from mlflow import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        if not db.is_file():
            raise AnalysisError(f"no MLflow store at {tracking_uri}: {str(db)!r} does not exist; pass the sweep's "
                                "--tracking-uri (sweeps default to sqlite:///mlruns.db in the folder they ran in).")

    return MlflowClient(tracking_uri=tracking_uri)


def _training_metrics(values: Mapping[str, float]) -> dict[str, float]:
    """A run's metrics without Ray Tune's bookkeeping (:data:`TUNE_RESULT_KEYS`) and the headline copies
    (:data:`bap.metrics.HEADLINE_METRICS`); every other key is kept."""
    return {k: v for k, v in values.items() if k not in TUNE_RESULT_KEYS and k not in M.HEADLINE_METRICS}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def _search_all(client: Any, experiment_ids: list[str], filter_string: str, page_size: int) -> Iterator[Any]:
    """Every active run matching ``filter_string``, one page of ``page_size`` runs at a time."""
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string=filter_string, max_results=page_size, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def _experiment(client: Any, tracking_uri: str, experiment: str) -> Any:
    """An experiment by name, else by id; AnalysisError naming the known experiments otherwise."""
    try:
        found = client.get_experiment_by_name(experiment)
        if found is None and experiment.isdigit():
            found = client.get_experiment(experiment)
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc) and "not found" not in str(exc).lower():
            raise AnalysisError(f"cannot read the MLflow tracking store {tracking_uri}: {_first_line(exc)}") from None
        found = None
    if found is None:
        names = sorted(e.name for e in client.search_experiments(max_results=50))
        raise AnalysisError(
            f"no MLflow experiment {experiment!r} at {tracking_uri}; experiments there: {names or 'none'}. "
            "Pass --experiment with one of them (the sweep's --experiment)."
        )
    return found


def find_sweep(
    tracking_uri: str,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    sweep_id: str | None = None,
    *,
    page_size: int = PAGE_SIZE,
) -> SweepRef:
    """Resolve which sweep to read: a parent run id, a sweep id, or the newest sweep of an experiment.

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///mlruns.db``, ``http://host:5000``).
        experiment: Experiment name or id. Required with ``sweep_id``; alone, the newest sweep in it is chosen.
        parent_run_id: The sweep's parent run; wins over the other two.
        sweep_id: The sweep's ``bap.sweep_id`` tag (the sweep's name).
        page_size: Runs per ``search_runs`` page.

    Returns:
        The sweep's location.

    Raises:
        AnalysisError: The store cannot be read, or the experiment, parent run or sweep does not exist.
    """
    client = _client(tracking_uri)
    if parent_run_id:
        try:
            run = client.get_run(parent_run_id)
        except Exception as exc:
            raise AnalysisError(
                f"no MLflow run {parent_run_id!r} at {tracking_uri} ({_first_line(exc)}); pass the sweep's parent "
                "run id (the sweep prints it) or --experiment/--sweep-id instead."
            ) from None
        exp = client.get_experiment(run.info.experiment_id)
        return SweepRef(tracking_uri, exp.experiment_id, exp.name, parent_run_id, run.data.tags.get(M.TAG_SWEEP_ID))
    if not experiment:
        raise AnalysisError("say which sweep to read: give an experiment (and optionally a sweep id) or a parent run id.")
    exp = _experiment(client, tracking_uri, experiment)
    role = f"tags.`{M.TAG_ROLE}` = {_quote(M.ROLE_SWEEP)}"
    if sweep_id:
        role += f" and tags.`{M.TAG_SWEEP_ID}` = {_quote(sweep_id)}"
    try:
        parents = list(_search_all(client, [exp.experiment_id], role, page_size))
    except Exception as exc:
        raise AnalysisError(f"cannot search runs at {tracking_uri}: {_first_line(exc)}") from None
    if parents:
        newest = max(parents, key=lambda r: r.info.start_time or 0)
        total = len(parents)
        if not sweep_id:
            total = len({r.data.tags.get(M.TAG_SWEEP_ID) for r in parents})
        return SweepRef(tracking_uri, exp.experiment_id, exp.name, newest.info.run_id,
                        newest.data.tags.get(M.TAG_SWEEP_ID), total)
    # No parent run (e.g. trials logged by hand): the child runs can still be found by their tags.
    return SweepRef(tracking_uri, exp.experiment_id, exp.name, None, sweep_id, 0)


def trial_filter(ref: SweepRef) -> str:
    """The ``search_runs`` filter that selects the sweep's child runs."""
    if ref.parent_run_id:
        return f"tags.{M.TAG_PARENT_RUN} = {_quote(ref.parent_run_id)}"
    filter_string = f"tags.`{M.TAG_ROLE}` = {_quote(M.ROLE_TRIAL)}"
    if ref.sweep_id:
        filter_string += f" and tags.`{M.TAG_SWEEP_ID}` = {_quote(ref.sweep_id)}"
    return filter_string


def mlflow_records(ref: SweepRef, *, page_size: int = PAGE_SIZE) -> list[TrialRecord]:
    """The sweep's child runs as trial records (every page of ``search_runs``)."""
    client = _client(ref.tracking_uri)
    filter_string = trial_filter(ref)
    try:
        runs = list(_search_all(client, [ref.experiment_id], filter_string, page_size))
    except Exception as exc:
        raise AnalysisError(f"cannot search runs at {ref.tracking_uri}: {_first_line(exc)}") from None
    records = []
    for run in runs:
        tags = run.data.tags
        records.append(
            TrialRecord(
                sweep_id=tags.get(M.TAG_SWEEP_ID) or ref.sweep_id or "",
                trial_id=tags.get(M.TAG_TRIAL_ID) or run.info.run_name or run.info.run_id,
                status=run.info.status,
                metrics=_training_metrics(run.data.metrics),
                config=dict(run.data.params),
                run_id=run.info.run_id,
                retimed=tags.get(M.TAG_LATENCY_RETIMED),
            )
        )
    return records


def load_mlflow(
    tracking_uri: str,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    sweep_id: str | None = None,
    *,
    page_size: int = PAGE_SIZE,
) -> pd.DataFrame:
    """The trial table of one sweep logged to MLflow (see :func:`find_sweep` for how the sweep is chosen).

    Args:
        tracking_uri: MLflow tracking URI.
        experiment: Experiment name or id.
        parent_run_id: The sweep's parent run.
        sweep_id: The sweep's ``bap.sweep_id`` tag.
        page_size: Runs per ``search_runs`` page (large sweeps take several pages).

    Returns:
        One row per child run (:mod:`analysis.table`); empty if the sweep has no child runs.

    Raises:
        AnalysisError: The store, experiment, parent run or sweep cannot be found or read.
    """
    ref = find_sweep(tracking_uri, experiment, parent_run_id, sweep_id, page_size=page_size)
    return build_table(mlflow_records(ref, page_size=page_size))


# --------------------------------------------------------------------------------------------------------------
# Ray Tune folders: a local folder, or an object-store URI (``s3://bucket/sweeps``) read through pyarrow
# --------------------------------------------------------------------------------------------------------------


def is_uri(folder: str | Path) -> bool:
    """True for an object-store URI (``s3://...``, ``gs://...``, ``file://...``); False for a local path."""
    return isinstance(folder, str) and "://" in folder


def _uri_join(uri: str, name: str) -> str:
    """``<uri>/<name>``, with the URI's query (``?endpoint_override=...``) kept at the end."""
    base, sep, query = uri.partition("?")
    return f"{base.rstrip('/')}/{name}{sep}{query}"


def _shown(folder: str | Path) -> str:
    """``folder`` for messages: a URI's credentials (``s3://KEY:SECRET@bucket/...``) left out."""
    text = str(folder)
    scheme, sep, rest = text.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return text
    return f"{scheme}://***@{netloc.rsplit('@', 1)[1]}{slash}{path}"


def tune_experiment_name(experiment_dir: str | Path) -> str:
    """The sweep id of a Tune experiment folder or URI: its last path segment."""
    if is_uri(experiment_dir):
        return str(experiment_dir).partition("?")[0].rstrip("/").rsplit("/", 1)[-1]
    return Path(experiment_dir).name


@dataclass(frozen=True)
class _Folder:
    """A folder on a pyarrow filesystem, and how it is shown to callers (the local ``Path``, or the URI)."""

    fs: Any
    path: str  # on ``fs``
    shown: Path | str

    @classmethod
    def of(cls, folder: str | Path) -> _Folder:
        import pyarrow.fs as pafs

        if not is_uri(folder):
            return cls(pafs.LocalFileSystem(), os.path.abspath(folder), Path(folder))
        try:
            fs, path = pafs.FileSystem.from_uri(str(folder))
        except Exception as exc:  # an unknown scheme, a malformed URI, a bucket region that cannot be resolved
            raise AnalysisError(f"cannot open the Ray Tune results at {_shown(folder)!r}: {_first_line(exc)}") \
                from None
        return cls(fs, path.rstrip("/"), str(folder))

    def child(self, name: str) -> _Folder:
        shown = self.shown / name if isinstance(self.shown, Path) else _uri_join(self.shown, name)
        return _Folder(self.fs, f"{self.path}/{name}", shown)

    @property
    def name(self) -> str:
        return tune_experiment_name(self.shown)

    def is_dir(self) -> bool:
        import pyarrow.fs as pafs

        return self._call(self.fs.get_file_info, self.path).type == pafs.FileType.Directory

    def listing(self) -> dict[str, Any]:
        """Name -> ``pyarrow.fs.FileInfo`` of every entry directly inside (none if the folder does not exist)."""
        import pyarrow.fs as pafs

        infos = self._call(self.fs.get_file_info, pafs.FileSelector(self.path, allow_not_found=True))
        return {info.base_name: info for info in infos}

    def read_text(self, name: str) -> str | None:
        """The text of the file ``name`` inside (None if it is not there)."""
        try:
            with self.fs.open_input_stream(f"{self.path}/{name}") as stream:
                return stream.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            if isinstance(self.shown, Path):
                return None
            raise AnalysisError(f"cannot read {_shown(_uri_join(str(self.shown), name))!r}: {_first_line(exc)}") \
                from None

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as exc:  # e.g. the object store refused: credentials, no such bucket, unreachable endpoint
            raise AnalysisError(f"cannot read the Ray Tune results at {_shown(self.shown)!r}: {_first_line(exc)}") \
                from None


def _is_file(listing: Mapping[str, Any], name: str) -> bool:
    import pyarrow.fs as pafs

    info = listing.get(name)
    return info is not None and info.type == pafs.FileType.File


def _is_trial(listing: Mapping[str, Any]) -> bool:
    return _is_file(listing, _RESULT_FILE) or _is_file(listing, _PARAMS_FILE)


def _subfolders(folder: _Folder) -> list[_Folder]:
    import pyarrow.fs as pafs

    return [folder.child(name) for name, info in sorted(folder.listing().items())
            if info.type == pafs.FileType.Directory]


def _trial_dirs(experiment_dir: _Folder) -> list[tuple[_Folder, dict[str, Any]]]:
    """The trial folders of an experiment folder, by name, each with its listing."""
    out = []
    for sub in _subfolders(experiment_dir):
        listing = sub.listing()
        if _is_trial(listing):
            out.append((sub, listing))
    return out


def _has_trial_dir(folder: _Folder) -> bool:
    return any(_is_trial(sub.listing()) for sub in _subfolders(folder))


def _existing(folder: str | Path) -> _Folder:
    root = _Folder.of(folder)
    if not root.is_dir():
        raise AnalysisError(f"Ray Tune results folder {_shown(root.shown)!r} does not exist; pass the sweep's "
                            "--storage-path or its experiment folder below it.")
    return root


def find_tune_experiments(folder: str | Path, sweep_id: str | None = None) -> list[Path | str]:
    """Tune experiment folders at ``folder``: itself if it holds trial folders, else its sub-folders that do.

    Args:
        folder: A Tune experiment folder (``<storage>/<sweep>``) or the storage root above several: a local path,
            or an object-store URI (``s3://bucket/sweeps``; credentials and endpoint as pyarrow takes them: the
            ``AWS_*`` environment, or ``?endpoint_override=...`` in the URI).
        sweep_id: Keep only the experiment of that name.

    Returns:
        The experiment folders, sorted by name: ``Path`` s for a local ``folder``, URIs for a URI.

    Raises:
        AnalysisError: ``folder`` does not exist or cannot be read.
    """
    return [f.shown for f in _find_experiments(_existing(folder), sweep_id)]


def _find_experiments(root: _Folder, sweep_id: str | None) -> list[_Folder]:
    if _has_trial_dir(root):
        found = [root]
    else:
        found = [sub for sub in _subfolders(root) if (not sweep_id or sub.name == sweep_id) and _has_trial_dir(sub)]
    if sweep_id:
        found = [f for f in found if f.name == sweep_id]
    return found


def _read_results(text: str | None) -> tuple[dict[str, float], str | None]:
    """Latest value of every numeric metric over result.json's lines, and the trial id they name."""
    latest: dict[str, float] = {}
    trial_id = None
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed driver
        if not isinstance(row, dict):
            continue
        trial_id = row.get("trial_id", trial_id)
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                latest[key] = float(value)
    return _training_metrics(latest), trial_id


def _read_json(folder: _Folder, name: str) -> dict[str, Any]:
    text = folder.read_text(name)
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _trial_train_config(trial_dir: _Folder, listing: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's whole training configuration (``train/trial_config.json``), as MLflow has it with every run: Tune's
    ``params.json`` holds only what the search chose."""
    if M.TRAIN_DIR not in listing:
        return {}
    train = _read_json(trial_dir.child(M.TRAIN_DIR), M.TRIAL_CONFIG_FILE).get("train")
    return dict(train) if isinstance(train, dict) else {}


def tune_records(experiment_dir: str | Path) -> list[TrialRecord]:
    """Every trial folder of one Tune experiment (a local folder or a URI) as a trial record (sweep id = the
    folder's name)."""
    return _records(_Folder.of(experiment_dir))


def _records(experiment: _Folder) -> list[TrialRecord]:
    records = []
    for trial_dir, listing in _trial_dirs(experiment):
        text = trial_dir.read_text(_RESULT_FILE) if _is_file(listing, _RESULT_FILE) else None
        metrics, trial_id = _read_results(text)
        params = _read_json(trial_dir, _PARAMS_FILE) if _is_file(listing, _PARAMS_FILE) else {}
        config = {**_trial_train_config(trial_dir, listing), **params}
        if trial_id is None:
            match = _TRIAL_ID_IN_DIR.search(trial_dir.name)
            trial_id = (match.group(1) or match.group(2)) if match else trial_dir.name
        if M.is_finished(metrics):
            status = STATUS_FINISHED
        elif any(_is_file(listing, name) for name in _ERROR_FILES):
            status = STATUS_FAILED
        else:
            status = STATUS_KILLED
        records.append(TrialRecord(experiment.name, str(trial_id), status, metrics, param_text(config)))
    return records


def _written(experiment: _Folder) -> float:
    """When a trial of the experiment last wrote its results (0.0: never)."""
    times = [info.mtime.timestamp() for _, listing in _trial_dirs(experiment)
             if (info := listing.get(_RESULT_FILE)) is not None and info.mtime is not None]
    return max(times, default=0.0)


def _newest(folder: str | Path, sweep_id: str | None) -> tuple[_Folder | None, int]:
    found = _find_experiments(_existing(folder), sweep_id)
    if not found:
        return None, 0
    if len(found) == 1:
        return found[0], 1
    return max(found, key=lambda f: (_written(f), f.name)), len(found)


def newest_tune_experiment(folder: str | Path, sweep_id: str | None = None) -> tuple[Path | str | None, int]:
    """The sweep to read from a Tune folder (local or a URI): the one named ``sweep_id``, else the most recently
    written one.

    Returns:
        The experiment folder (a ``Path``, or a URI for a URI; None if there is none) and how many sweeps ``folder``
        holds.
    """
    experiment, count = _newest(folder, sweep_id)
    return (experiment.shown if experiment is not None else None), count


def load_tune(folder: str | Path, sweep_id: str | None = None) -> pd.DataFrame:
    """The trial table of one sweep in a Ray Tune results folder.

    Args:
        folder: The sweep's experiment folder (``<storage>/<sweep>``) or the storage root above it; a local path or
            an object-store URI (``s3://bucket/sweeps``, see :func:`find_tune_experiments`).
        sweep_id: The sweep (experiment folder name) to read from a storage root; default: the one written last.

    Returns:
        One row per trial folder (:mod:`analysis.table`); empty if no trial folder was found.

    Raises:
        AnalysisError: ``folder`` does not exist or cannot be read.
    """
    experiment, _ = _newest(folder, sweep_id)
    return build_table(_records(experiment) if experiment is not None else [])
