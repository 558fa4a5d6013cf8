"""The trial table: one row per sweep trial, the same columns whether read from MLflow or from a Ray Tune folder.

Both loaders (:mod:`analysis.load`) hand raw records to :func:`build_table`, which is the only place that decides
columns, order and dtypes -- so the two sources cannot drift apart. Columns, in order:

* identity: ``sweep_id``, ``trial_id`` (Ray Tune's), ``run_id`` (the MLflow child run; missing when read from Tune),
  ``status`` (``FINISHED``, ``KILLED`` = stopped early, ``FAILED``, ``RUNNING``) and ``finished`` (the trial's final,
  budget-enforced and pruned metrics are there: ``pruned_agreement`` was reported);
* flat metrics named in :mod:`bap.metrics` (``budget``, ``epoch``, ``mean_val_acc``, ``score``, ``union_params``,
  ``union_macs``, their ``*_ratio`` ...), each the *latest* value reported by the trial;
* ``reference_params`` / ``reference_macs``: one single-domain ResNet-26 with its (largest) head, the unit of the
  union ratios, recovered as ``union_params / union_params_ratio`` (likewise per domain: ``reference_params/<d>``);
* per-domain metrics ``val_acc/<d>``, ``params/<d>``, ``macs/<d>``, ``params_ratio/<d>``, ``macs_ratio/<d>``,
  ``usage/<d>`` ... for every domain seen, domains in alphabetical order;
* ``config/<key>``: the trial's configuration values that *vary* across the table's trials (what the search chose,
  e.g. ``config/sharing``, ``config/lr``). Settings shared by every trial are left out: MLflow records them with each
  trial, Tune does not, and a constant column says nothing about a front.

Accuracies are fractions in ``[0, 1]``, params and MACs are counts (MACs per image; 1 MAC = 2 FLOPs), ratios are in
units of one single-domain ResNet-26 with its head. Metrics a trial never reported are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bap import metrics as M

__all__ = [
    "CONFIG_PREFIX",
    "FINISHED",
    "FLAT_METRICS",
    "PER_DOMAIN_METRICS",
    "REFERENCE_MACS",
    "REFERENCE_PARAMS",
    "RUN_ID",
    "STATUS",
    "SWEEP_ID",
    "TRIAL_ID",
    "TRIAL_META_KEYS",
    "TrialRecord",
    "build_table",
    "config_columns",
    "domains_of",
    "param_text",
    "parse_param",
    "read_parquet",
    "to_parquet",
]

# Identity columns (analysis-only names: not metrics, so not in bap.metrics).
SWEEP_ID = "sweep_id"
TRIAL_ID = "trial_id"
RUN_ID = "run_id"
STATUS = "status"
FINISHED = "finished"
REFERENCE_PARAMS = "reference_params"  # one single-domain ResNet-26 with its head; per domain: reference_params/<d>
REFERENCE_MACS = "reference_macs"
CONFIG_PREFIX = "config/"

STATUS_FINISHED, STATUS_KILLED, STATUS_FAILED, STATUS_RUNNING = "FINISHED", "KILLED", "FAILED", "RUNNING"

# Sweep bookkeeping in a Tune trial config (written by sweeps/space.py): not training settings.
TRIAL_META_KEYS = ("optuna_trial", "optuna_study")

# The flat metrics a trial reports (bap.metrics vocabulary); the first ones are always columns, even if NaN.
_CORE_FLAT = (
    M.BUDGET, M.EPOCH, M.MEAN_VAL_ACC, M.SCORE, M.UNION_PARAMS, M.UNION_MACS, M.UNION_PARAMS_RATIO,
    M.UNION_MACS_RATIO, M.PRUNED_AGREEMENT,
)
FLAT_METRICS: tuple[str, ...] = (
    *_CORE_FLAT, M.TRAIN_LOSS, M.SHARING_LOSS, M.SHARING_WEIGHT, M.ENFORCED_SWITCHES_OFF,
)
_CORE_PER_DOMAIN = (M.VAL_ACC, M.PARAMS, M.MACS, M.PARAMS_RATIO, M.MACS_RATIO)
PER_DOMAIN_METRICS: tuple[str, ...] = (
    M.VAL_ACC, M.TEST_ACC, M.PARAMS, M.MACS, M.PARAMS_RATIO, M.MACS_RATIO, M.USAGE, M.SWITCHES_ON, M.DUAL,
    M.DOMAIN_TRAIN_LOSS,
)


@dataclass
class TrialRecord:
    """One trial as a loader found it, before any schema decision.

    Attributes:
        sweep_id: The sweep (MLflow tag ``bap.sweep_id``; the Tune experiment folder's name).
        trial_id: Ray Tune's trial id.
        status: ``FINISHED``, ``KILLED``, ``FAILED`` or ``RUNNING``.
        metrics: Latest value of every reported metric (any keys; unknown ones are dropped).
        config: The trial's configuration as MLflow stores params: flat keys, text values (see :func:`param_text`).
        run_id: The MLflow child run, if read from MLflow.
    """

    sweep_id: str
    trial_id: str
    status: str
    metrics: Mapping[str, float]
    config: Mapping[str, str] = field(default_factory=dict)
    run_id: str | None = None


param_text = M.param_text  # one encoder for the producer (sweeps/) and this reader



def parse_param(text: str | None) -> bool | float | str | None:
    """An MLflow param's text back to a value: ``"True"`` -> True, ``"0.5"`` -> 0.5, ``"None"`` -> None, else text."""
    if text is None or text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return float(text)
    except ValueError:
        return text


def domains_of(columns: Iterable[str]) -> list[str]:
    """The domains named by per-domain columns (``val_acc/<d>``), sorted."""
    found = set()
    for column in columns:
        split = M.split_domain_metric(column)
        if split is not None and split[0] in PER_DOMAIN_METRICS:
            found.add(split[1])
    return sorted(found)


def config_columns(table: pd.DataFrame) -> list[str]:
    """The ``config/<key>`` columns of a trial table."""
    return [c for c in table.columns if c.startswith(CONFIG_PREFIX)]


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _config_frame(records: Sequence[TrialRecord], index: pd.Index) -> pd.DataFrame:
    """Varying configuration values, typed per column (numbers, booleans or text)."""
    keys = sorted({k for r in records for k in r.config if k not in TRIAL_META_KEYS})
    columns: dict[str, pd.Series] = {}
    for key in keys:
        values = [parse_param(r.config.get(key)) for r in records]
        present = [v for v in values if v is not None]
        if len({repr(v) for v in values}) <= 1:
            continue  # the same for every trial
        if present and all(isinstance(v, bool) for v in present):
            series = pd.Series(values, index=index, dtype="boolean")
        elif present and all(isinstance(v, float) for v in present):
            series = pd.Series([math.nan if v is None else v for v in values], index=index, dtype=np.float64)
        else:
            series = pd.Series([None if v is None else str(v) for v in values], index=index, dtype="str")
        columns[CONFIG_PREFIX + key] = series
    return pd.DataFrame(columns, index=index)


def build_table(records: Sequence[TrialRecord]) -> pd.DataFrame:
    """The trial table (module docstring) from loader records, sorted by sweep and trial id.

    Args:
        records: One per trial, from :func:`analysis.load.load_mlflow` or :func:`analysis.load.load_tune`.

    Returns:
        The table, with a fresh ``RangeIndex``. An empty ``records`` gives an empty table with the identity and
        core metric columns.
    """
    records = sorted(records, key=lambda r: (r.sweep_id, r.trial_id))
    index = pd.RangeIndex(len(records))
    metric_keys = {k for r in records for k in r.metrics}
    domains = domains_of(metric_keys)
    flat = [m for m in FLAT_METRICS if m in _CORE_FLAT or m in metric_keys]
    per_domain = [
        M.domain_metric(name, d)
        for d in domains
        for name in PER_DOMAIN_METRICS
        if name in _CORE_PER_DOMAIN or M.domain_metric(name, d) in metric_keys
    ]
    data: dict[str, Any] = {
        SWEEP_ID: pd.Series([r.sweep_id for r in records], index=index, dtype="str"),
        TRIAL_ID: pd.Series([r.trial_id for r in records], index=index, dtype="str"),
        RUN_ID: pd.Series([r.run_id for r in records], index=index, dtype="str"),
        STATUS: pd.Series([r.status for r in records], index=index, dtype="str"),
    }
    numbers = {
        key: np.array([_number(r.metrics.get(key)) for r in records], dtype=np.float64) for key in flat + per_domain
    }
    data[FINISHED] = pd.Series(~np.isnan(numbers[M.PRUNED_AGREEMENT]), index=index, dtype=bool)
    for key in flat:
        data[key] = numbers[key]
        if key == M.UNION_MACS_RATIO:  # the unit of the union ratios, right after them
            data[REFERENCE_PARAMS] = _reference(numbers[M.UNION_PARAMS], numbers[M.UNION_PARAMS_RATIO])
            data[REFERENCE_MACS] = _reference(numbers[M.UNION_MACS], numbers[M.UNION_MACS_RATIO])
    budget_config = [parse_param(r.config.get(M.BUDGET)) for r in records]
    fallback = np.array([v if isinstance(v, float) else math.nan for v in budget_config], dtype=np.float64)
    data[M.BUDGET] = np.where(np.isnan(data[M.BUDGET]), fallback, data[M.BUDGET])  # budget before the 1st epoch
    for d in domains:
        for name in PER_DOMAIN_METRICS:
            key = M.domain_metric(name, d)
            if key in numbers:
                data[key] = numbers[key]
            if name == M.MACS_RATIO:
                data[M.domain_metric(REFERENCE_PARAMS, d)] = _reference(
                    numbers[M.domain_metric(M.PARAMS, d)], numbers[M.domain_metric(M.PARAMS_RATIO, d)]
                )
                data[M.domain_metric(REFERENCE_MACS, d)] = _reference(
                    numbers[M.domain_metric(M.MACS, d)], numbers[M.domain_metric(M.MACS_RATIO, d)]
                )
    table = pd.DataFrame(data, index=index)
    return pd.concat([table, _config_frame(records, index)], axis=1)


def _reference(absolute: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """``absolute / ratio`` rounded to a whole count (NaN where either is missing or the ratio is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.round(absolute / ratio)
    out[~np.isfinite(out)] = np.nan
    return out


def to_parquet(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the trial table as Parquet (pyarrow), creating the folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, engine="pyarrow", index=False)
    return path


def read_parquet(path: str | Path) -> pd.DataFrame:
    """Read a trial table written by :func:`to_parquet` (same columns, dtypes and values)."""
    return pd.read_parquet(path, engine="pyarrow")
