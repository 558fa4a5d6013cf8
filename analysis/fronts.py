"""The data step of the Pareto report: fronts and hypervolumes per target, across budgets and per budget.

A *target* is one accuracy axis with its two cost axes:

* each domain ``d``: ``val_acc/d`` against ``params_ratio/d`` and ``macs_ratio/d`` (what deploying that domain alone
  costs);
* ``mean``: ``mean_val_acc`` against ``union_params_ratio`` and ``union_macs_ratio`` (the pruned multi-domain
  network);
* ``score``: the Decathlon ``score`` against the same union costs (only when the sweep has a score: every domain
  needs a baseline error).

For every target :func:`pareto_data` marks the non-dominated trials of accuracy (up) against params (down), against
MACs (down) and against both (3 objectives) -- once over all trials ("across budgets") and once within each budget
group -- and computes the matching exact hypervolumes with :func:`analysis.pareto.hypervolume_by_group`.

Reference point of the hypervolumes (:func:`analysis.pareto.reference_point`): accuracy ``0`` (score ``0``) and cost
ratio ``1.1`` single-domain backbones; trials costing 1.1 backbones or more add no volume. Volumes are in accuracy
(fraction, or score points) x ratio units: a 2-D volume of 0.8 means 80 % accuracy over a whole backbone of cost.

Measured latency (when the trials report it: ``latency_cpu_b1_ms`` and ``latency_cpu_b64_ms``, per domain
``latency_cpu_b1_ms/<d>``): accuracy against CPU milliseconds at batch 1 and at batch 64 are two more objective sets,
``latency_b1`` and ``latency_b64`` (:data:`LATENCY_OBJECTIVES`), with fronts across budgets and per budget group like
the cost ones. A trial that was not timed (NaN) is on no latency front. They get front sizes but no hypervolume:
milliseconds depend on the machine and on what else ran on it while it timed (``latency_neighbours``), so a volume
in ms would not compare across sweeps or machines, and the ratio columns (pruned over unpruned ms, timed side by
side) are per-trial quotients of two noisy times rather than a fixed unit. Without latency columns the data is
exactly what it was before they existed.

Budget groups: a grid sweep's budgets are used as they are; a sweep with more than ``max_budget_groups`` distinct
budgets (pareto mode samples them) is cut into that many equal-width budget ranges.

Only finished trials count by default: a trial stopped early has neither an enforced budget nor a pruned model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.pareto import fronts_by_group, hypervolume_by_group, reference_point
from analysis.table import FINISHED, REFERENCE_MACS, REFERENCE_PARAMS, STATUS, TRIAL_ID, domains_of
from bap import metrics as M

__all__ = [
    "ACROSS_BUDGETS",
    "COST_OBJECTIVES",
    "LATENCY_B1_MS",
    "LATENCY_B64_MS",
    "LATENCY_OBJECTIVES",
    "ParetoData",
    "TARGET_MEAN",
    "TARGET_SCORE",
    "Target",
    "budget_groups",
    "has_latency",
    "pareto_data",
    "targets_of",
]

TARGET_MEAN = "mean"
TARGET_SCORE = "score"
ACROSS_BUDGETS = "all"  # budget_group label of the across-budgets fronts and hypervolumes
MAX_BUDGET_GROUPS = 8

# Long-format point columns.
TARGET, TRIAL, BUDGET_GROUP = "target", "trial", "budget_group"
ACCURACY = "accuracy"
PARAMS, MACS, PARAMS_RATIO, MACS_RATIO = M.PARAMS, M.MACS, M.PARAMS_RATIO, M.MACS_RATIO  # a target's cost columns
# Objective sets: name -> cost columns (accuracy is always maximised).
COST_OBJECTIVES: dict[str, tuple[str, ...]] = {
    "params": (PARAMS_RATIO,),
    "macs": (MACS_RATIO,),
    "3d": (PARAMS_RATIO, MACS_RATIO),
}
# Measured CPU latency of a target (ms per call of a whole batch), as long-format point columns; objective sets of
# accuracy against each, used when the table has latency (fronts only: see the module docstring on hypervolumes).
LATENCY_B1_MS, LATENCY_B64_MS = "latency_b1_ms", "latency_b64_ms"
LATENCY_OBJECTIVES: dict[str, tuple[str, ...]] = {
    "latency_b1": (LATENCY_B1_MS,),
    "latency_b64": (LATENCY_B64_MS,),
}
LATENCY_DEVICE = "cpu"  # the device every trial is timed on (cuda only where it trained on a GPU)


@dataclass(frozen=True)
class Target:
    """One accuracy axis and its cost axes, as columns of the trial table.

    Attributes:
        name: The domain, ``"mean"`` or ``"score"``.
        title: For plots, e.g. ``"dtd"`` or ``"mean accuracy over 4 domains"``.
        accuracy: Accuracy column (a fraction) or the score column.
        params: Absolute parameters column.
        macs: Absolute MACs column.
        params_ratio: Params ratio column (single-domain backbones).
        macs_ratio: MACs ratio column.
        reference_params: Column holding the ratios' unit, in parameters.
        reference_macs: The same in MACs.
        union: The costs are the whole multi-domain network's (mean and score) rather than one domain's.
        is_score: The accuracy axis is the Decathlon score (points), not a fraction.
        latency_b1: Measured CPU milliseconds at batch 1 column (``latency_cpu_b1_ms``, per domain
            ``latency_cpu_b1_ms/<d>``; for mean and score the slowest domain's), "" for none.
        latency_b64: The same at batch 64 (milliseconds per batch of 64 images).
    """

    name: str
    title: str
    accuracy: str
    params: str
    macs: str
    params_ratio: str
    macs_ratio: str
    reference_params: str
    reference_macs: str
    union: bool = False
    is_score: bool = False
    latency_b1: str = ""
    latency_b64: str = ""

    def latency(self, objective: str) -> str:
        """The latency column of a latency objective (``"latency_b1"`` or ``"latency_b64"``)."""
        return self.latency_b1 if objective == "latency_b1" else self.latency_b64


def _latency_columns(domain: str | None) -> dict[str, str]:
    """A target's CPU latency columns, flat (``domain=None``: the slowest domain's) or per domain."""
    out = {}
    for name, batch in (("latency_b1", 1), ("latency_b64", 64)):
        column = M.latency_metric(LATENCY_DEVICE, batch)
        out[name] = column if domain is None else M.domain_metric(column, domain)
    return out


def has_latency(table: pd.DataFrame) -> bool:
    """True if some trial of the table reports a measured CPU latency (flat or of a domain)."""
    names = {M.latency_metric(LATENCY_DEVICE, batch) for batch in M.LATENCY_BATCHES}
    columns = [c for c in table.columns if c in names or (M.split_domain_metric(c) or ("", ""))[0] in names]
    return any(table[c].notna().any() for c in columns)


def targets_of(table: pd.DataFrame) -> list[Target]:
    """The targets a trial table supports: its domains (sorted), then ``mean``, then ``score`` if any trial has one."""
    out = []
    for d in domains_of(table.columns):
        out.append(Target(
            d, d, M.domain_metric(M.VAL_ACC, d), M.domain_metric(M.PARAMS, d), M.domain_metric(M.MACS, d),
            M.domain_metric(M.PARAMS_RATIO, d), M.domain_metric(M.MACS_RATIO, d),
            M.domain_metric(REFERENCE_PARAMS, d), M.domain_metric(REFERENCE_MACS, d), **_latency_columns(d),
        ))
    n = len(out)
    union = dict(params=M.UNION_PARAMS, macs=M.UNION_MACS, params_ratio=M.UNION_PARAMS_RATIO,
                 macs_ratio=M.UNION_MACS_RATIO, reference_params=REFERENCE_PARAMS, reference_macs=REFERENCE_MACS,
                 union=True, **_latency_columns(None))
    out.append(Target(TARGET_MEAN, f"mean accuracy over {n} domain{'s' * (n != 1)}", M.MEAN_VAL_ACC, **union))
    if M.SCORE in table.columns and table[M.SCORE].notna().any():
        out.append(Target(TARGET_SCORE, "Decathlon score", M.SCORE, is_score=True, **union))
    return out


def budget_groups(budgets: pd.Series, max_groups: int = MAX_BUDGET_GROUPS) -> tuple[pd.Series, list[str]]:
    """Label each budget with its group: the budget itself (``"0.25"``) or an equal-width range (``"0.10-0.21"``).

    Args:
        budgets: One budget per trial (NaN allowed: label ``"?"``).
        max_groups: Most groups; more distinct budgets are binned.

    Returns:
        The labels (aligned with ``budgets``) and the group labels in increasing budget order.
    """
    values = budgets.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    unique = np.unique(values[finite])
    labels = np.full(len(values), "?", dtype=object)
    if len(unique) <= max_groups:
        order = [f"{b:g}" for b in unique]
        labels[finite] = [f"{b:g}" for b in values[finite]]
    else:
        edges = np.linspace(unique[0], unique[-1], max_groups + 1)
        order = [f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(edges[:-1], edges[1:])]
        index = np.clip(np.searchsorted(edges, values[finite], side="right") - 1, 0, max_groups - 1)
        labels[finite] = [order[i] for i in index]
    if not finite.all():
        order.append("?")
    return pd.Series(labels, index=budgets.index, name=BUDGET_GROUP, dtype="str"), order


@dataclass
class ParetoData:
    """Fronts and hypervolumes of a sweep, ready to render.

    Attributes:
        targets: The targets, in display order.
        points: Long format, one row per (target, usable trial): ``target``, ``trial`` (row of the trial table),
            ``trial_id``, ``status``, ``budget``, ``budget_group``, ``accuracy``, ``params``, ``macs``,
            ``params_ratio``, ``macs_ratio``, ``reference_params``, ``reference_macs``, then the on-front flags
            ``front_params``, ``front_macs``, ``front_3d`` (across budgets) and ``budget_front_params``,
            ``budget_front_macs``, ``budget_front_3d`` (within the trial's budget group). With latency, also
            ``latency_b1_ms``, ``latency_b64_ms`` (NaN: not timed) and the flags ``front_latency_b1``,
            ``front_latency_b64``, ``budget_front_latency_b1``, ``budget_front_latency_b64``.
        hypervolumes: One row per (target, budget group) -- ``budget_group == "all"`` for across budgets -- with
            ``trials``, ``hv_params``, ``hv_macs``, ``hv_3d`` and the front sizes ``front_params``, ``front_macs``,
            ``front_3d`` (with latency also ``front_latency_b1``, ``front_latency_b64``; no latency volumes).
        reference: The hypervolume reference point: ``accuracy``, ``params_ratio`` and ``macs_ratio``.
        budget_groups: Group labels in increasing budget order.
        left_out: Per target, how many trials were left out and why (``unfinished``, ``missing metrics``).
        objectives: The objective sets the fronts were computed for: :data:`COST_OBJECTIVES`, then
            :data:`LATENCY_OBJECTIVES` when the table has latency.
    """

    targets: list[Target]
    points: pd.DataFrame
    hypervolumes: pd.DataFrame
    reference: dict[str, float]
    budget_groups: list[str]
    left_out: dict[str, dict[str, int]] = field(default_factory=dict)
    objectives: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(COST_OBJECTIVES))

    @property
    def latency(self) -> bool:
        """The fronts include accuracy against measured latency."""
        return any(name in self.objectives for name in LATENCY_OBJECTIVES)

    def target(self, name: str) -> Target:
        """The target called ``name``; KeyError naming the known targets otherwise."""
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(f"no target {name!r}; targets are {[t.name for t in self.targets]}")

    def points_of(self, name: str) -> pd.DataFrame:
        """The points of one target."""
        return self.points[self.points[TARGET] == name]

    def front_sizes(self) -> pd.Series:
        """Across-budget front size (accuracy vs params) per target."""
        across = self.hypervolumes[self.hypervolumes[BUDGET_GROUP] == ACROSS_BUDGETS]
        return across.set_index(TARGET)["front_params"]


def _long(table: pd.DataFrame, targets: Sequence[Target], groups: pd.Series, order: list[str],
          include_unfinished: bool, latency: bool = False,
          ) -> tuple[pd.DataFrame, dict[str, slice], dict[str, dict[str, int]]]:
    """Long points (targets in order, each a contiguous block), each target's block, and what was left out."""
    left_out: dict[str, dict[str, int]] = {}
    blocks: dict[str, slice] = {}
    n = len(table)
    finished = table[FINISHED].to_numpy(dtype=bool) if FINISHED in table else np.ones(n, dtype=bool)

    def floats(column: str) -> np.ndarray:
        return table[column].to_numpy(dtype=np.float64, na_value=np.nan) if column in table else np.full(n, np.nan)

    budget = floats(M.BUDGET)
    group_codes = pd.Categorical(groups.to_numpy(dtype=object), categories=order).codes
    numeric = (ACCURACY, PARAMS, MACS, PARAMS_RATIO, MACS_RATIO, REFERENCE_PARAMS, REFERENCE_MACS,
               *((LATENCY_B1_MS, LATENCY_B64_MS) if latency else ()))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (TRIAL, M.BUDGET, BUDGET_GROUP, *numeric)}
    start = 0
    for t in targets:
        values = {key: floats(column) for key, column in (
            (ACCURACY, t.accuracy), (PARAMS, t.params), (MACS, t.macs), (PARAMS_RATIO, t.params_ratio),
            (MACS_RATIO, t.macs_ratio), (REFERENCE_PARAMS, t.reference_params), (REFERENCE_MACS, t.reference_macs),
            *(((LATENCY_B1_MS, t.latency_b1), (LATENCY_B64_MS, t.latency_b64)) if latency else ()))}
        complete = ~(np.isnan(values[ACCURACY]) | np.isnan(values[PARAMS_RATIO]) | np.isnan(values[MACS_RATIO]))
        usable = complete & (finished | include_unfinished)
        left_out[t.name] = {
            "unfinished": int((complete & ~finished).sum()) if not include_unfinished else 0,
            "missing metrics": int((~complete).sum()),
        }
        rows = np.flatnonzero(usable)
        blocks[t.name] = slice(start, start + len(rows))
        start += len(rows)
        parts[TRIAL].append(rows)
        parts[M.BUDGET].append(budget[rows])
        parts[BUDGET_GROUP].append(group_codes[rows])
        for key, array in values.items():
            parts[key].append(array[rows])
    rows_all = np.concatenate(parts[TRIAL]) if parts[TRIAL] else np.zeros(0, dtype=np.int64)
    target_codes = np.concatenate([np.full(b.stop - b.start, i, dtype=np.int16)
                                   for i, b in enumerate(blocks.values())]) if blocks else np.zeros(0, np.int16)

    def text(column: str) -> pd.Series:
        values = table[column] if column in table else pd.Series([""] * n, dtype="str")
        return values.take(rows_all).reset_index(drop=True)

    points = pd.DataFrame({
        TARGET: pd.Categorical.from_codes(target_codes, categories=[t.name for t in targets]),
        TRIAL: rows_all,
        TRIAL_ID: text(TRIAL_ID),
        STATUS: text(STATUS),
        M.BUDGET: np.concatenate(parts[M.BUDGET]),
        BUDGET_GROUP: pd.Categorical.from_codes(np.concatenate(parts[BUDGET_GROUP]), categories=order),
        **{key: np.concatenate(parts[key]) for key in numeric},
    })
    return points, blocks, left_out


def _target_fronts(sub: pd.DataFrame, target: str, objectives: dict[str, tuple[str, ...]],
                   reference: dict[str, float], flags: dict[str, np.ndarray], block: slice,
                   order: list[str]) -> list[dict[str, object]]:
    """One target's fronts (written into ``flags[block]``) and its hypervolume rows: across budgets, then per group.

    Latency objectives get fronts and front sizes, no volume (module docstring).
    """
    per_group: dict[str, dict[str, object]] = {}
    across: dict[str, object] = {TARGET: target, BUDGET_GROUP: ACROSS_BUDGETS, "trials": len(sub)}
    for name, costs in objectives.items():
        objective_senses = {ACCURACY: "max", **{c: "min" for c in costs}}
        volume = name in COST_OBJECTIVES
        ref = {c: reference[c] for c in objective_senses} if volume else {}
        # A point dominated within its budget group is dominated overall, and adds no volume: the overall
        # front and every hypervolume only need the budget fronts' points.
        on_budget = fronts_by_group(sub, objective_senses, by=BUDGET_GROUP).to_numpy()
        candidates = sub[on_budget]
        on = np.zeros(len(sub), dtype=bool)
        on[on_budget] = fronts_by_group(candidates, objective_senses).to_numpy()
        flags[f"front_{name}"][block] = on
        flags[f"budget_front_{name}"][block] = on_budget
        if volume:
            across[f"hv_{name}"] = (float(hypervolume_by_group(candidates[on[on_budget]], objective_senses,
                                                               ref).iloc[0]) if len(sub) else 0.0)
        across[f"front_{name}"] = int(on.sum())
        if len(sub) == 0:
            continue
        sizes = pd.Series(on_budget).groupby(sub[BUDGET_GROUP].to_numpy(), observed=True).agg(["size", "sum"])
        volumes = (hypervolume_by_group(candidates, objective_senses, ref, by=BUDGET_GROUP) if volume
                   else pd.Series(np.nan, index=sizes.index))
        for group in volumes.index:
            entry = per_group.setdefault(str(group), {TARGET: target, BUDGET_GROUP: str(group)})
            entry.update({"trials": int(sizes.loc[group, "size"]), f"front_{name}": int(sizes.loc[group, "sum"])})
            if volume:
                entry[f"hv_{name}"] = float(volumes.loc[group])
    return [across] + [per_group[g] for g in order if g in per_group]


def pareto_data(
    table: pd.DataFrame,
    *,
    include_unfinished: bool = False,
    max_budget_groups: int = MAX_BUDGET_GROUPS,
    acc_floor: float | None = None,
    cost_ceiling: float | None = None,
) -> ParetoData:
    """Fronts and hypervolumes of every target of a trial table (module docstring).

    Args:
        table: The trial table (:mod:`analysis.table`).
        include_unfinished: Also use trials stopped early (their latest metrics; no enforced budget).
        max_budget_groups: Most budget groups (see :func:`budget_groups`).
        acc_floor: Hypervolume reference accuracy (default :data:`analysis.pareto.REFERENCE_ACCURACY`).
        cost_ceiling: Hypervolume reference cost ratio (default :data:`analysis.pareto.REFERENCE_COST_RATIO`).

    Returns:
        The fronts and hypervolumes; targets without any usable trial have no points and zero volumes. With
        latency in the table (:func:`has_latency`), the latency fronts too.
    """
    targets = targets_of(table)
    groups, order = budget_groups(table[M.BUDGET] if M.BUDGET in table else pd.Series(np.nan, index=table.index),
                                  max_budget_groups)
    latency = has_latency(table)
    objectives = {**COST_OBJECTIVES, **(LATENCY_OBJECTIVES if latency else {})}
    points, blocks, left_out = _long(table, targets, groups, order, include_unfinished, latency)
    kwargs = {k: v for k, v in (("acc_floor", acc_floor), ("cost_ceiling", cost_ceiling)) if v is not None}
    reference = reference_point({ACCURACY: "max", PARAMS_RATIO: "min", MACS_RATIO: "min"}, **kwargs)
    # One target at a time: each target's objectives have their own scale (a score is not a fraction), which
    # keeps analysis.pareto's binning prefilter effective; a target's points are one contiguous block.
    n = len(points)
    flags = {f"{prefix}_{name}": np.zeros(n, dtype=bool) for name in objectives
             for prefix in ("front", "budget_front")}
    rows: list[dict[str, object]] = []
    # What the fronts read: cheap to slice.
    numeric = points[[ACCURACY, PARAMS_RATIO, MACS_RATIO, *(c for name in LATENCY_OBJECTIVES if name in objectives
                                                             for c in LATENCY_OBJECTIVES[name]), BUDGET_GROUP]]
    for t in targets:
        block = blocks[t.name]
        rows += _target_fronts(numeric.iloc[block], t.name, objectives, dict(reference), flags, block, order)
    for column, values in flags.items():
        points[column] = values
    columns = ([TARGET, BUDGET_GROUP, "trials"] + [f"hv_{n}" for n in COST_OBJECTIVES]
               + [f"front_{n}" for n in objectives])
    hypervolumes = pd.DataFrame(rows, columns=columns)
    for column in ["trials"] + [f"front_{n}" for n in objectives]:
        hypervolumes[column] = hypervolumes[column].astype(np.int64)
    for column in (TARGET, BUDGET_GROUP):
        hypervolumes[column] = hypervolumes[column].astype("str")
    return ParetoData(targets, points, hypervolumes, dict(reference), order, left_out, objectives)
