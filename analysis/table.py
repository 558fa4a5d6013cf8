"""The trial table: one row per sweep trial, the same columns whether read from MLflow or from a Ray Tune folder.

Both loaders (:mod:`analysis.load`) hand raw records to :func:`build_table`, which is the only place that decides
columns, order and dtypes -- so the two sources cannot drift apart. The metric columns come from the shared
vocabulary (:mod:`bap.metrics`: ``FLAT_METRICS`` and ``PER_DOMAIN``), so a metric added there shows up here without
editing the analysis. Columns, in order:

* identity: ``sweep_id``, ``trial_id`` (Ray Tune's), ``run_id`` (the MLflow child run; missing when read from Tune),
  ``status`` (``FINISHED``, ``KILLED`` = stopped early, ``FAILED``, ``RUNNING``), ``finished``
  (:func:`bap.metrics.is_finished`: the trial reported its final, budget-enforced and pruned metrics) and
  ``budget_cost`` (what its budget bounds: ``params``, ``macs`` or ``switches``; missing if it was not logged),
  and ``latency_retimed`` (:data:`LATENCY_RETIMED`: when ``python -m analysis.retime`` re-measured the trial's
  latency alone, from MLflow's ``bap.latency_retimed`` tag; a column only when some trial has it);
* flat metrics of the vocabulary (``budget``, ``epoch``, ``mean_val_acc``, ``score``, ``union_params``,
  ``union_macs``, their ``*_ratio``, ``unpruned_params``, ``unpruned_macs``, ...), each the *latest* value reported
  by the trial; the core ones (:data:`CORE_FLAT`) are always columns, the others only when some trial reported them;
* ``reference_params`` / ``reference_macs``: one single-domain ResNet-26 with its (largest) head, the unit of the
  union ratios, recovered as ``union_params / union_params_ratio`` (likewise per domain: ``reference_params/<d>``);
* per-domain metrics of the vocabulary ``val_acc/<d>``, ``params/<d>``, ``macs/<d>``, ``params_ratio/<d>``,
  ``macs_ratio/<d>``, ``usage/<d>`` ... for every domain seen, domains in alphabetical order (the core ones,
  :data:`CORE_PER_DOMAIN`, for every domain);
* extra metrics: numeric metrics a trial reported that the vocabulary does not know, sorted by name -- kept so that
  nothing reported is lost (a producer that renames a metric shows up as a new column next to a NaN known one); only
  a name that would clash with an identity, reference or ``config/`` column is left out;
* ``config/<key>``: the trial's configuration values that *vary* across the table's trials (what the search chose,
  e.g. ``config/sharing``, ``config/lr``). Settings shared by every trial are left out: MLflow records them with each
  trial, Tune does not, and a constant column says nothing about a front. The sweep's bookkeeping
  (:data:`bap.metrics.TRIAL_META_KEYS`) never is a column.

Known metrics come in a fixed order (:func:`flat_metrics`, :func:`per_domain_metrics`: the order of earlier tables,
then the vocabulary's other names in its order), so existing columns keep their place and dtype (``float64``) when
the vocabulary grows. Accuracies are fractions in ``[0, 1]``, params and MACs are counts (MACs per image;
1 MAC = 2 FLOPs), ratios are in units of one single-domain ResNet-26 with its head. Metrics a trial never reported
are NaN.
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
    "CORE_FLAT",
    "CORE_PER_DOMAIN",
    "FINISHED",
    "FLAT_METRICS",
    "LATENCY_RETIMED",
    "PER_DOMAIN_METRICS",
    "REFERENCE_MACS",
    "REFERENCE_PARAMS",
    "RUN_ID",
    "STATUS",
    "BUDGET_COST",
    "SWEEP_ID",
    "TRIAL_ID",
    "TRIAL_META_KEYS",
    "TrialRecord",
    "build_table",
    "config_columns",
    "domains_of",
    "flat_metrics",
    "param_text",
    "per_domain_metrics",
    "parse_param",
    "read_parquet",
    "to_parquet",
]

# Identity columns (analysis-only names: not metrics, so not in bap.metrics).
SWEEP_ID = "sweep_id"
TRIAL_ID = "trial_id"
RUN_ID = "run_id"
STATUS = "status"
BUDGET_COST = M.PARAM_BUDGET_COST  # text: what the trial's budget bounds (params, macs, switches); None if not logged
FINISHED = "finished"
REFERENCE_PARAMS = "reference_params"  # one single-domain ResNet-26 with its head; per domain: reference_params/<d>
REFERENCE_MACS = "reference_macs"
CONFIG_PREFIX = "config/"
LATENCY_RETIMED = "latency_retimed"  # text: the MLflow tag bap.latency_retimed (ISO time), None where absent

STATUS_FINISHED, STATUS_KILLED, STATUS_FAILED, STATUS_RUNNING = "FINISHED", "KILLED", "FAILED", "RUNNING"

# Sweep bookkeeping in a Tune trial config (written by sweeps/): not training settings.
TRIAL_META_KEYS: tuple[str, ...] = M.TRIAL_META_KEYS

# Metric columns present in every table, even if NaN (what the fronts and the summary read).
CORE_FLAT: tuple[str, ...] = (
    M.BUDGET, M.EPOCH, M.MEAN_VAL_ACC, M.SCORE, M.UNION_PARAMS, M.UNION_MACS, M.UNION_PARAMS_RATIO,
    M.UNION_MACS_RATIO, M.PRUNED_AGREEMENT,
)
CORE_PER_DOMAIN: tuple[str, ...] = (M.VAL_ACC, M.PARAMS, M.MACS, M.PARAMS_RATIO, M.MACS_RATIO)
# Column order of the known metrics: these first (the order of earlier tables), then every other name of the
# vocabulary in its own order -- the set of names is the vocabulary's, these only fix where existing columns stay.
_FLAT_ORDER = (*CORE_FLAT, M.TRAIN_LOSS, M.SHARING_LOSS, M.SHARING_WEIGHT, M.ENFORCED_SWITCHES_OFF)
_PER_DOMAIN_ORDER = (
    M.VAL_ACC, M.TEST_ACC, M.PARAMS, M.MACS, M.PARAMS_RATIO, M.MACS_RATIO, M.USAGE, M.SWITCHES_ON, M.DUAL,
    M.DOMAIN_TRAIN_LOSS,
)


def _in_table_order(vocabulary: Sequence[str], leading: Sequence[str]) -> tuple[str, ...]:
    first = [name for name in leading if name in vocabulary]
    return (*first, *(name for name in vocabulary if name not in first))


def flat_metrics() -> tuple[str, ...]:
    """Every flat metric of the vocabulary (``bap.metrics.FLAT_METRICS``, read at each call), in column order."""
    return _in_table_order(M.FLAT_METRICS, _FLAT_ORDER)


def per_domain_metrics() -> tuple[str, ...]:
    """Every per-domain metric of the vocabulary (``bap.metrics.PER_DOMAIN``), in column order."""
    return _in_table_order(M.PER_DOMAIN, _PER_DOMAIN_ORDER)


# The same, as of import (the names earlier versions of this module exported).
FLAT_METRICS: tuple[str, ...] = flat_metrics()
PER_DOMAIN_METRICS: tuple[str, ...] = per_domain_metrics()


@dataclass
class TrialRecord:
    """One trial as a loader found it, before any schema decision.

    Attributes:
        sweep_id: The sweep (MLflow tag ``bap.sweep_id``; the Tune experiment folder's name).
        trial_id: Ray Tune's trial id.
        status: ``FINISHED``, ``KILLED``, ``FAILED`` or ``RUNNING``.
        metrics: Latest value of every reported metric (any keys: those the vocabulary does not know become extra
            columns; values that are not numbers are ignored).
        config: The trial's configuration as MLflow stores params: flat keys, text values (see :func:`param_text`).
        run_id: The MLflow child run, if read from MLflow.
        retimed: When its latency was re-measured alone (the run's ``bap.latency_retimed`` tag), if it was.
    """

    sweep_id: str
    trial_id: str
    status: str
    metrics: Mapping[str, float]
    config: Mapping[str, str] = field(default_factory=dict)
    run_id: str | None = None
    retimed: str | None = None


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
        if split is not None and split[0] in M.PER_DOMAIN and split[1]:
            found.add(split[1])
    return sorted(found)


def config_columns(table: pd.DataFrame) -> list[str]:
    """The ``config/<key>`` columns of a trial table."""
    return [c for c in table.columns if c.startswith(CONFIG_PREFIX)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any) -> float:
    return float(value) if _is_number(value) else math.nan


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


@dataclass(frozen=True)
class _MetricKeys:
    """Which metric columns a table of some records has (see the module docstring), in column order."""

    flat: list[str]
    domains: list[str]
    per_domain_names: tuple[str, ...]
    per_domain: list[str]
    extra: list[str]

    @property
    def all(self) -> list[str]:
        return [*self.flat, *self.per_domain, *self.extra]


_IDENTITY = (SWEEP_ID, TRIAL_ID, RUN_ID, STATUS, FINISHED, BUDGET_COST, LATENCY_RETIMED)
_DERIVED = (REFERENCE_PARAMS, REFERENCE_MACS)


def _is_reserved(key: str) -> bool:
    """A metric name that would clash with an identity, derived or configuration column."""
    split = M.split_domain_metric(key)
    return (key in _IDENTITY or key in _DERIVED or key.startswith(CONFIG_PREFIX)
            or (split is not None and split[0] in _DERIVED))


def _metric_keys(records: Sequence[TrialRecord]) -> _MetricKeys:
    reported: set[str] = set().union(*(r.metrics for r in records))
    domains = domains_of(reported)
    per_domain_names = per_domain_metrics()
    flat = [m for m in flat_metrics() if m in CORE_FLAT or m in reported]
    per_domain = [
        M.domain_metric(name, d)
        for d in domains
        for name in per_domain_names
        if name in CORE_PER_DOMAIN or M.domain_metric(name, d) in reported
    ]
    unknown = sorted(k for k in reported if not M.is_known_metric(k) and not _is_reserved(k))
    extra = [k for k in unknown if any(_is_number(r.metrics.get(k)) for r in records)]  # a number, once at least
    return _MetricKeys(flat, domains, per_domain_names, per_domain, extra)


def _flat_columns(keys: _MetricKeys, numbers: Mapping[str, np.ndarray], records: Sequence[TrialRecord],
                  ) -> dict[str, np.ndarray]:
    """The flat metric columns, the reference sizes right after the union ratios (whose unit they are)."""
    out: dict[str, np.ndarray] = {}
    for key in keys.flat:
        out[key] = numbers[key]
        if key == M.UNION_MACS_RATIO:
            out[REFERENCE_PARAMS] = _reference(numbers[M.UNION_PARAMS], numbers[M.UNION_PARAMS_RATIO])
            out[REFERENCE_MACS] = _reference(numbers[M.UNION_MACS], numbers[M.UNION_MACS_RATIO])
    budget_config = [parse_param(r.config.get(M.BUDGET)) for r in records]
    fallback = np.array([v if isinstance(v, float) else math.nan for v in budget_config], dtype=np.float64)
    out[M.BUDGET] = np.where(np.isnan(out[M.BUDGET]), fallback, out[M.BUDGET])  # budget before the 1st epoch
    return out


def _per_domain_columns(keys: _MetricKeys, numbers: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per domain its metric columns, its reference sizes right after its ratios."""
    out: dict[str, np.ndarray] = {}
    for d in keys.domains:
        for name in keys.per_domain_names:
            key = M.domain_metric(name, d)
            if key in numbers:
                out[key] = numbers[key]
            if name == M.MACS_RATIO:
                for derived, absolute, ratio in ((REFERENCE_PARAMS, M.PARAMS, M.PARAMS_RATIO),
                                                 (REFERENCE_MACS, M.MACS, M.MACS_RATIO)):
                    out[M.domain_metric(derived, d)] = _reference(numbers[M.domain_metric(absolute, d)],
                                                                  numbers[M.domain_metric(ratio, d)])
    return out


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
    keys = _metric_keys(records)
    numbers = {key: np.array([_number(r.metrics.get(key)) for r in records], dtype=np.float64) for key in keys.all}
    data: dict[str, Any] = {
        SWEEP_ID: pd.Series([r.sweep_id for r in records], index=index, dtype="str"),
        TRIAL_ID: pd.Series([r.trial_id for r in records], index=index, dtype="str"),
        RUN_ID: pd.Series([r.run_id for r in records], index=index, dtype="str"),
        STATUS: pd.Series([r.status for r in records], index=index, dtype="str"),
        FINISHED: pd.Series([M.is_finished(r.metrics) for r in records], index=index, dtype=bool),
        BUDGET_COST: pd.Series([r.config.get(BUDGET_COST) for r in records], index=index, dtype="str"),
    }
    if any(r.retimed for r in records):  # tables of sweeps never re-timed keep their columns
        data[LATENCY_RETIMED] = pd.Series([r.retimed or None for r in records], index=index, dtype="str")
    data.update(_flat_columns(keys, numbers, records))
    data.update(_per_domain_columns(keys, numbers))
    data.update({key: numbers[key] for key in keys.extra})
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
