"""Exact Pareto fronts and hypervolumes of sweep trials, vectorised with NumPy.

This is the data step behind the report's Pareto plots (accuracy against parameters and MACs): it only computes
masks and numbers; plotting lives elsewhere.

Conventions:
    * Objectives are an ``(n, k)`` float array plus one sense per objective, ``"max"`` or ``"min"``
      (a single string applies to every objective). Internally everything is converted to minimisation.
    * A point ``p`` dominates ``q`` if ``p`` is no worse than ``q`` in every objective and strictly better in at
      least one. A point is on the front if no point dominates it.
    * **Duplicates**: identical points do not dominate each other, so *every* copy of a non-dominated point is on
      the front (a sweep that finds the same trade-off twice shows it twice).
    * **NaN**: a row with a NaN in any objective is never on the front, never dominates anything and contributes
      no hypervolume (an unfinished or crashed trial). Infinities are ordinary values.
    * The hypervolume is the Lebesgue measure of the region dominated by the points and bounded by a reference
      point, in the objectives' own units. Points that are not strictly better than the reference in every
      objective contribute nothing.

Reference point used by the report (:func:`reference_point`):
    accuracies (``"max"`` objectives, in ``[0, 1]``) are bounded by ``acc_floor = 0.0`` -- the worst possible
    accuracy, so no trial is cut off for being inaccurate -- and costs (``"min"`` objectives: ``params_ratio``,
    ``macs_ratio``, ``union_*_ratio``, in units of one single-domain ResNet-26 backbone with its head) by
    ``cost_ceiling = 1.1``: slightly worse than the unpruned backbone (ratio 1), so even the largest networks
    keep a non-zero share of the volume. Trials costing 1.1 backbones or more contribute nothing. With both
    (non-negative) costs, the largest possible hypervolume of a 3-objective front is ``1.0 * 1.1 * 1.1 = 1.21``.

Algorithms and complexity (``n`` points, ``m`` of them on the front):
    * :func:`pareto_mask`, ``k == 1``: the minimum, O(n).
    * ``k == 2``: sort by the first objective, then a running minimum of the second (ties in the first objective
      resolved per block of equal values), O(n log n).
    * ``k == 3``: lexicographic sort, then an offline 2-D dominance query ("is some earlier point no worse in
      objectives 2 and 3?") answered by divide and conquer, every level vectorised: O(n log^2 n) worst case,
      independent of the front's size.
    * ``k >= 4``: order points by the sum of their per-objective ranks (a dominating point comes first), then
      repeatedly take the best remaining block of points, keep its front points and drop every remaining point
      they dominate: O(n * m * k) worst case -- fast when fronts are small, quadratic when every point is on it.
    * :func:`hypervolume`, ``k == 2``: sort plus a running minimum, O(n log n).
      ``k == 3``: the 3-D front (above), then a sweep over the third objective that keeps the 2-D staircase
      in a sorted list (HV3D-style): O(m log m) comparisons plus list shifts, one Python step per front point.
    * For ``k`` in (2, 3) and at least 2048 points, an O(n) prefilter first drops points that are certainly
      dominated (a coarse grid over the first ``k - 1`` objectives holding the minimum of the last one). It is
      exact -- it never drops a front point -- and on sweep-like data leaves a few thousand of 10^6 points, so
      the sorts above run on those.
    * :func:`fronts_by_group` and :func:`hypervolume_by_group` handle all groups in one vectorised pass for
      ``k <= 3`` fronts and ``k <= 2`` hypervolumes (the group is the leading sort key); 3-D hypervolumes and
      ``k >= 4`` fronts loop over groups (a Python step per group, not per point).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import overload

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "REFERENCE_ACCURACY",
    "REFERENCE_COST_RATIO",
    "SENSES",
    "fronts_by_group",
    "hypervolume",
    "hypervolume_by_group",
    "pareto_front_2d",
    "pareto_mask",
    "reference_point",
]

SENSES: tuple[str, ...] = ("max", "min")

REFERENCE_ACCURACY = 0.0  # worst possible accuracy: every trial counts, however inaccurate
REFERENCE_COST_RATIO = 1.1  # in single-domain backbones: a little worse than the unpruned network (ratio 1)

_HYPERVOLUME_KS = (1, 2, 3)
_PREFILTER_MIN_POINTS = 2048  # below this, sorting everything is as fast as prefiltering
_PREFILTER_MAX_BINS = {2: 1024, 3: 128}  # per binned objective
_ALL_LABEL = "all"  # the single group's label in hypervolume_by_group(..., by=None)


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------


def pareto_mask(points: npt.ArrayLike, senses: str | Sequence[str]) -> npt.NDArray[np.bool_]:
    """Which points are on the Pareto front (not dominated by any other point).

    Args:
        points: ``(n, k)`` objective values, ``k >= 1``. An empty 1-D input counts as ``n = 0``.
        senses: ``"max"`` or ``"min"`` per objective (length ``k``), or one string for all objectives.

    Returns:
        Boolean array of length ``n``. All copies of a non-dominated point are ``True``; rows with a NaN are
        ``False``.

    Raises:
        ValueError: ``points`` is not 2-D, or ``senses`` has the wrong length or an unknown value.
    """
    x = _as_points(points, senses)
    minimised = _to_minimisation(x, _parse_senses(senses, x.shape[1]))
    return _front_mask(minimised, np.zeros(len(x), dtype=np.int64), 1)


def pareto_front_2d(cost: npt.ArrayLike, acc: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Pareto front of cost (minimised) against accuracy (maximised), e.g. ``params_ratio`` vs ``val_acc``.

    Args:
        cost: ``(n,)`` costs, lower is better.
        acc: ``(n,)`` accuracies, higher is better.

    Returns:
        Boolean mask of length ``n`` (see :func:`pareto_mask` for ties, duplicates and NaN).

    Raises:
        ValueError: ``cost`` and ``acc`` are not 1-D arrays of the same length.
    """
    cost_arr = np.asarray(cost, dtype=np.float64)
    acc_arr = np.asarray(acc, dtype=np.float64)
    if cost_arr.ndim != 1 or cost_arr.shape != acc_arr.shape:
        raise ValueError(
            f"cost and acc must be 1-D arrays of the same length, got shapes {cost_arr.shape} and "
            f"{acc_arr.shape}."
        )
    return pareto_mask(np.column_stack([cost_arr, acc_arr]), ("min", "max"))


def hypervolume(points: npt.ArrayLike, senses: str | Sequence[str], reference: Sequence[float]) -> float:
    """Exact hypervolume dominated by ``points`` and bounded by ``reference``.

    Args:
        points: ``(n, k)`` objective values with ``k`` in (1, 2, 3).
        senses: ``"max"`` or ``"min"`` per objective, or one string for all objectives.
        reference: ``k`` finite values in the objectives' own units (e.g. :func:`reference_point`). Only
            points strictly better than it in every objective contribute; NaN rows are ignored.

    Returns:
        The hypervolume (``0.0`` when no point contributes, ``inf`` when a contributing point is infinitely
        good).

    Raises:
        ValueError: ``k`` is not 1, 2 or 3, or ``senses`` / ``reference`` do not match the points.
    """
    x = _as_points(points, senses)
    is_max = _parse_senses(senses, x.shape[1])
    ref = _parse_reference(reference, x.shape[1], is_max)
    minimised = _to_minimisation(x, is_max)
    return float(_hypervolume_by_code(minimised, np.zeros(len(x), dtype=np.int64), 1, ref)[0])


@overload
def reference_point(
    senses: Mapping[str, str], *, acc_floor: float = ..., cost_ceiling: float = ...
) -> dict[str, float]: ...


@overload
def reference_point(
    senses: str | Sequence[str], *, acc_floor: float = ..., cost_ceiling: float = ...
) -> tuple[float, ...]: ...


def reference_point(
    senses: Mapping[str, str] | str | Sequence[str],
    *,
    acc_floor: float = REFERENCE_ACCURACY,
    cost_ceiling: float = REFERENCE_COST_RATIO,
) -> dict[str, float] | tuple[float, ...]:
    """The report's reference point: ``acc_floor`` for ``"max"`` objectives, ``cost_ceiling`` for ``"min"`` ones.

    Meant for accuracies in ``[0, 1]`` and cost ratios in units of one single-domain backbone (see the module
    docstring for why ``0.0`` and ``1.1``).

    Args:
        senses: An objectives mapping (column -> sense), as passed to :func:`hypervolume_by_group`, or a
            sequence of senses, as passed to :func:`hypervolume`. A bare string means one objective.
        acc_floor: Reference value of every maximised objective (an accuracy).
        cost_ceiling: Reference value of every minimised objective (a cost ratio).

    Returns:
        ``{column: value}`` for a mapping, otherwise a tuple in the order of ``senses``.

    Raises:
        ValueError: A sense is neither ``"max"`` nor ``"min"``.
    """
    if isinstance(senses, Mapping):
        names = list(senses)
        is_max = _parse_senses([senses[name] for name in names], len(names))
        return {name: float(acc_floor if mx else cost_ceiling) for name, mx in zip(names, is_max)}
    sense_list = [senses] if isinstance(senses, str) else list(senses)
    is_max = _parse_senses(sense_list, len(sense_list))
    return tuple(float(acc_floor if mx else cost_ceiling) for mx in is_max)


def fronts_by_group(
    df: pd.DataFrame,
    objectives: Mapping[str, str],
    by: str | Sequence[str] | None = None,
) -> pd.Series:
    """Mark the rows of ``df`` that are on the Pareto front of their group.

    Args:
        df: One row per trial (or per trial and domain, in long format).
        objectives: Column name -> ``"max"`` or ``"min"``, e.g. ``{"val_acc": "max", "params_ratio": "min"}``.
        by: Column(s) defining the groups (e.g. ``"domain"``); ``None`` treats the frame as one group. Missing
            keys form their own group.

    Returns:
        Boolean Series named ``"on_front"``, aligned with ``df.index``. Ties, duplicates and NaN rows follow
        :func:`pareto_mask`.

    Raises:
        ValueError: ``objectives`` is empty, names a missing column or has an unknown sense.
    """
    x, codes, n_groups, _ = _prepare_frame(df, objectives, by)
    return pd.Series(_front_mask(x, codes, n_groups), index=df.index, name="on_front", dtype=bool)


def hypervolume_by_group(
    df: pd.DataFrame,
    objectives: Mapping[str, str],
    reference: Mapping[str, float] | Sequence[float],
    by: str | Sequence[str] | None = None,
) -> pd.Series:
    """Hypervolume of each group's trials (see :func:`hypervolume`).

    Args:
        df: One row per trial (or per trial and domain, in long format).
        objectives: Column name -> ``"max"`` or ``"min"``; 1, 2 or 3 columns.
        reference: Column name -> reference value (e.g. ``reference_point(objectives)``), or values in the
            order of ``objectives``.
        by: Column(s) defining the groups; ``None`` treats the frame as one group.

    Returns:
        Float Series named ``"hypervolume"`` indexed by the sorted group keys (a MultiIndex for several ``by``
        columns; the single label ``"all"`` when ``by`` is None). Groups without a contributing row get 0.0.

    Raises:
        ValueError: More than 3 objectives, or ``reference`` does not match ``objectives``.
    """
    x, codes, n_groups, keys = _prepare_frame(df, objectives, by)
    if isinstance(reference, Mapping):
        missing = [name for name in objectives if name not in reference]
        if missing:
            raise ValueError(f"reference has no value for objective(s) {missing}; give one per objective.")
        ref_values: Sequence[float] = [reference[name] for name in objectives]
    else:
        ref_values = reference
    is_max = _parse_senses(list(objectives.values()), len(objectives))
    ref = _parse_reference(ref_values, len(objectives), is_max)
    volumes = _hypervolume_by_code(x, codes, n_groups, ref)
    return pd.Series(volumes, index=keys, name="hypervolume", dtype=np.float64)


# --------------------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------------------


def _parse_senses(senses: str | Sequence[str], k: int) -> npt.NDArray[np.bool_]:
    """``True`` where an objective is maximised."""
    sense_list = [senses] * k if isinstance(senses, str) else list(senses)
    if len(sense_list) != k:
        raise ValueError(
            f"got {len(sense_list)} senses for {k} objectives; give one of {SENSES} per objective."
        )
    unknown = [s for s in sense_list if s not in SENSES]
    if unknown:
        raise ValueError(f"unknown sense(s) {unknown}; each sense must be one of {SENSES}.")
    return np.array([s == "max" for s in sense_list], dtype=bool)


def _as_points(points: npt.ArrayLike, senses: str | Sequence[str]) -> npt.NDArray[np.float64]:
    x = np.asarray(points, dtype=np.float64)
    if x.ndim == 1 and x.size == 0:
        k = 1 if isinstance(senses, str) else len(senses)
        return x.reshape(0, k)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"points must be an (n, k) array with k >= 1, got shape {x.shape}.")
    return x


def _parse_reference(
    reference: Sequence[float], k: int, is_max: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """The reference point, converted to minimisation like the points."""
    if k not in _HYPERVOLUME_KS:
        raise ValueError(
            f"hypervolume supports k in {_HYPERVOLUME_KS} objectives, got k={k}; "
            "drop objectives or compare fronts with pareto_mask instead."
        )
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    if ref.shape != (k,) or not np.isfinite(ref).all():
        raise ValueError(f"reference must be {k} finite values (one per objective), got {reference!r}.")
    return _to_minimisation(ref[None, :], is_max)[0]


def _to_minimisation(x: npt.NDArray[np.float64], is_max: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    # "+ 0.0" turns -0.0 into 0.0 so that sorting and equality agree on zeros.
    return np.where(is_max, -x, x) + 0.0


def _prepare_frame(
    df: pd.DataFrame, objectives: Mapping[str, str], by: str | Sequence[str] | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], int, pd.Index]:
    """Minimised objective matrix, group code per row, number of groups and the sorted group keys."""
    if not objectives:
        raise ValueError("objectives is empty; give at least one {column: 'max' | 'min'}.")
    missing = [name for name in objectives if name not in df.columns]
    if missing:
        raise ValueError(f"objective column(s) {missing} not in the frame; available: {list(df.columns)}.")
    is_max = _parse_senses(list(objectives.values()), len(objectives))
    x = df[list(objectives)].to_numpy(dtype=np.float64, na_value=np.nan)
    x = _to_minimisation(x.reshape(len(df), len(objectives)), is_max)
    if by is None:
        return x, np.zeros(len(df), dtype=np.int64), 1, pd.Index([_ALL_LABEL])
    grouped = df.groupby(by if isinstance(by, str) else list(by), sort=True, dropna=False, observed=True)
    codes = grouped.ngroup().to_numpy(dtype=np.int64)
    keys = grouped.size().index
    return x, codes, len(keys), keys


# --------------------------------------------------------------------------------------------------------------
# Fronts (minimisation, all groups at once)
# --------------------------------------------------------------------------------------------------------------


def _front_mask(
    x: npt.NDArray[np.float64], codes: npt.NDArray[np.int64], n_groups: int
) -> npt.NDArray[np.bool_]:
    """On-front mask of minimised points ``x`` within groups ``codes`` (0..n_groups-1); NaN rows are off."""
    mask = np.zeros(len(x), dtype=bool)
    valid = ~np.isnan(x).any(axis=1)
    k = x.shape[1]
    if k in (2, 3):
        valid[valid] = _maybe_on_front(x[valid], codes[valid], n_groups)
    rows = np.flatnonzero(valid)
    if len(rows) == 0:
        return mask
    xv, gv = x[rows], codes[rows]
    if k == 1:
        group_min = pd.Series(xv[:, 0]).groupby(gv).transform("min").to_numpy()
        mask[rows] = xv[:, 0] == group_min
    elif k == 2:
        mask[rows] = _front_2d(xv[:, 0], xv[:, 1], gv, n_groups)
    elif k == 3:
        mask[rows] = _front_3d(xv, gv, n_groups)
    else:
        order = _group_order(gv, n_groups)
        bounds = np.flatnonzero(np.diff(gv[order])) + 1
        for members in np.split(order, bounds):
            mask[rows[members]] = _front_kd(xv[members])
    return mask


def _maybe_on_front(
    x: npt.NDArray[np.float64], codes: npt.NDArray[np.int64], n_groups: int
) -> npt.NDArray[np.bool_]:
    """Cheap exact prefilter for ``k`` in (2, 3): ``False`` only for points that are certainly dominated.

    The first ``k - 1`` objectives are cut into equal-width bins (per group: a grid of ``bins ** (k - 1)`` cells)
    and each cell keeps the minimum of the last objective. A point is dominated if a cell that is strictly lower
    in every binned objective holds a last objective ``<=`` its own: binning is monotone, so a strictly lower bin
    means a strictly smaller value. O(n) plus the grid's size; sweeps leave only the front's neighbourhood, so the
    exact O(n log n) step that follows sorts far fewer points. Rows with an infinity are always kept.
    """
    n, k = x.shape
    keep = np.ones(n, dtype=bool)
    budget = max(n, 1 << 12) // max(n_groups, 1)  # grid cells per group, O(n) in total
    bins = min(_PREFILTER_MAX_BINS[k], int(budget ** (1 / (k - 1))))
    if n < _PREFILTER_MIN_POINTS or bins < 4:
        return keep
    finite = np.isfinite(x).all(axis=1)
    xf, gf = x[finite], codes[finite]
    if len(xf) == 0:
        return keep
    lo, hi = xf[:, : k - 1].min(axis=0), xf[:, : k - 1].max(axis=0)
    span = hi - lo
    if not np.isfinite(span).all():
        return keep
    scale = np.divide(bins, span, out=np.zeros_like(span), where=span > 0)
    cell = gf  # flat cell index: group, then one bin per binned objective
    for j in range(k - 1):
        bin_j = np.minimum(((xf[:, j] - lo[j]) * scale[j]).astype(np.int64), bins - 1)
        cell = cell * bins + bin_j
    grid = np.full(n_groups * bins ** (k - 1), np.inf)
    np.minimum.at(grid, cell, xf[:, k - 1])
    grid = grid.reshape((n_groups,) + (bins,) * (k - 1))
    # Minimum over cells strictly lower in every binned objective: prefix minima, shifted by one cell per axis.
    for axis in range(1, k):
        grid = np.minimum.accumulate(grid, axis=axis)
    shifted = (slice(None),) + (slice(1, None),) * (k - 1)  # cell (g, i, j) looks at (g, i - 1, j - 1)
    unshifted = (slice(None),) + (slice(None, -1),) * (k - 1)
    strictly_lower = np.full_like(grid, np.inf)
    strictly_lower[shifted] = grid[unshifted]
    keep[finite] = ~(strictly_lower.reshape(-1)[cell] <= xf[:, k - 1])
    return keep


def _group_order(
    codes: npt.NDArray[np.int64], n_groups: int, within: npt.NDArray[np.intp] | None = None
) -> npt.NDArray[np.intp]:
    """Stable permutation sorting by group code (after ``within``, if given): radix sort for small codes."""
    base = np.arange(len(codes)) if within is None else within
    if n_groups == 1:
        return base
    small = codes.astype(np.uint8 if n_groups <= 1 << 8 else np.uint16 if n_groups <= 1 << 16 else np.int64)
    return base[np.argsort(small[base], kind="stable")]


def _front_2d(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], codes: npt.NDArray[np.int64], n_groups: int
) -> npt.NDArray[np.bool_]:
    """2-D front per group: sort by (group, a), then a running minimum of b over blocks of equal a.

    A point is dominated by a point with a smaller ``a`` iff the minimum ``b`` before its block is ``<=`` its
    ``b``, and by a point with the same ``a`` iff its ``b`` is above its block's minimum.
    """
    n = len(a)
    order = _group_order(codes, n_groups, within=np.argsort(a))
    a_s, b_s, g_s = a[order], b[order], codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = g_s[1:] != g_s[:-1]
    new_block = new_group.copy()
    new_block[1:] |= a_s[1:] != a_s[:-1]
    starts = np.flatnonzero(new_block)
    block_min = np.minimum.reduceat(b_s, starts)
    block_group = g_s[starts]
    first_in_group = new_group[starts]
    running_min = pd.Series(block_min).groupby(block_group, sort=False).cummin().to_numpy()
    min_before = np.empty_like(block_min)
    min_before[0] = np.inf
    min_before[1:] = running_min[:-1]
    block_on = first_in_group | (block_min < min_before)
    block_id = np.cumsum(new_block) - 1
    on_sorted = block_on[block_id] & (b_s == block_min[block_id])
    mask = np.empty(n, dtype=bool)
    mask[order] = on_sorted
    return mask


def _dense_rank(v: npt.NDArray) -> npt.NDArray[np.int64]:
    """Ranks 0..u-1 with equal values sharing a rank (order-preserving)."""
    order = np.argsort(v, kind="stable")
    sv = v[order]
    new = np.ones(len(v), dtype=bool)
    new[1:] = sv[1:] != sv[:-1]
    rank = np.empty(len(v), dtype=np.int64)
    rank[order] = np.cumsum(new) - 1
    return rank


def _front_3d(
    x: npt.NDArray[np.float64], codes: npt.NDArray[np.int64], n_groups: int
) -> npt.NDArray[np.bool_]:
    """3-D front per group via a lexicographic sort and :func:`_dominated_by_earlier`.

    After sorting distinct points by (group, x0, x1, x2), ``q`` is dominated iff some earlier point of its group
    is ``<=`` in x1 and x2. Groups are folded into x1 and x2 (group ascending in one, descending in the other) so
    that points of different groups never compare as dominating.
    """
    n = len(x)
    r0, r1, r2 = (_dense_rank(x[:, j]) for j in range(3))
    span = n + 1  # ranks are < n
    order = np.lexsort((r1 * span + r2, codes * span + r0))
    g_s, r0_s, r1_s, r2_s = codes[order], r0[order], r1[order], r2[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (
        (g_s[1:] != g_s[:-1]) | (r0_s[1:] != r0_s[:-1]) | (r1_s[1:] != r1_s[:-1]) | (r2_s[1:] != r2_s[:-1])
    )
    # Exact duplicates are merged: a copy does not dominate its twin, so all copies share one verdict.
    reps = np.flatnonzero(new)
    g_r = g_s[reps]
    second = _dense_rank(g_r * span + r1_s[reps])
    third = _dense_rank((n_groups - 1 - g_r) * span + r2_s[reps])
    dominated = _dominated_by_earlier(second, third)
    mask = np.empty(n, dtype=bool)
    mask[order] = ~dominated[np.cumsum(new) - 1]
    return mask


def _dominated_by_earlier(
    second: npt.NDArray[np.int64], third: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """``out[i]`` = some ``j < i`` has ``second[j] <= second[i]`` and ``third[j] <= third[i]`` (ranks >= 0).

    Divide and conquer over the index: at level ``L`` every index block of size ``2**(L+1)`` is split in a left
    and a right half, and every right-half point asks whether a left-half point of its block is ``<=`` in both
    keys. Each pair ``j < i`` meets at exactly one level. All blocks of a level are answered at once: sort by
    (block, second) with left before right on ties, then a running minimum of ``third`` over left points,
    offset per block so that blocks do not leak into each other. O(n log n) per level, log2(n) levels.
    """
    m = len(second)
    dominated = np.zeros(m, dtype=bool)
    if m < 2:
        return dominated
    by_second = np.argsort(second, kind="stable")  # ties keep index order: left halves before right halves
    sentinel = int(third.max()) + 1  # "no left point yet"
    width = sentinel + 1
    for level in range(int(m - 1).bit_length()):
        block = by_second >> (level + 1)
        n_blocks = int((m - 1) >> (level + 1)) + 1
        small = block.astype(np.uint16) if n_blocks <= 1 << 16 else block
        order = by_second[np.argsort(small, kind="stable")]
        block_o = order >> (level + 1)
        is_right = ((order >> level) & 1).astype(bool)
        third_o = third[order]
        # Earlier blocks get larger offsets, so the running minimum inside a block only sees that block.
        offset = (n_blocks - block_o) * width
        running = np.minimum.accumulate(offset + np.where(is_right, sentinel, third_o))
        hit = is_right & (running - offset <= third_o)
        dominated[order[hit]] = True
    return dominated


def _front_kd(x: npt.NDArray[np.float64], block_size: int = 128) -> npt.NDArray[np.bool_]:
    """Front of one group for any ``k``: take the best remaining points, then drop everything they dominate.

    Distinct points are ordered by the sum of their per-objective ranks: a dominating point has a strictly
    smaller sum, so only earlier points can dominate, and good points (which dominate many) come first. The
    first ``block_size`` remaining points are not dominated by any earlier point (those left were all on the
    front and have already filtered them), so a check among themselves finds their front points; these then
    remove every remaining point they dominate. "<=" everywhere suffices because the points are distinct.
    """
    n, k = x.shape
    lex = np.lexsort(x.T[::-1])
    xs = x[lex]
    new = np.ones(n, dtype=bool)
    new[1:] = (xs[1:] != xs[:-1]).any(axis=1)
    distinct = xs[new]
    rank_sum = sum(_dense_rank(distinct[:, j]) for j in range(k))
    remaining = np.argsort(rank_sum, kind="stable")  # indices into distinct
    columns = np.ascontiguousarray(distinct.T)
    on_distinct = np.zeros(len(distinct), dtype=bool)
    while len(remaining):
        head, remaining = remaining[:block_size], remaining[block_size:]
        head_dominated = np.triu(_no_worse(columns[:, head], columns[:, head]), 1).any(axis=0)
        found = head[~head_dominated]
        on_distinct[found] = True
        chunk = max(1, (1 << 22) // len(found))  # bounded temporary memory
        survives = np.concatenate(
            [
                ~_no_worse(columns[:, found], columns[:, remaining[c : c + chunk]]).any(axis=0)
                for c in range(0, len(remaining), chunk)
            ]
            or [np.zeros(0, dtype=bool)]
        )
        remaining = remaining[survives]
    mask = np.empty(n, dtype=bool)
    mask[lex] = on_distinct[np.cumsum(new) - 1]
    return mask


def _no_worse(p: npt.NDArray[np.float64], q: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """``out[i, j]``: point ``p[:, i]`` is ``<=`` point ``q[:, j]`` in every objective (points as columns)."""
    out = p[0][:, None] <= q[0][None, :]
    for j in range(1, len(p)):
        out &= p[j][:, None] <= q[j][None, :]
    return out


# --------------------------------------------------------------------------------------------------------------
# Hypervolume (minimisation, all groups at once)
# --------------------------------------------------------------------------------------------------------------


def _hypervolume_by_code(
    x: npt.NDArray[np.float64], codes: npt.NDArray[np.int64], n_groups: int, ref: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Hypervolume per group of minimised points ``x`` against the minimised reference ``ref``."""
    volumes = np.zeros(n_groups)
    contributing = (x < ref).all(axis=1)  # False for NaN rows
    finite = np.isfinite(x).all(axis=1)
    # A contributing point with a -inf coordinate dominates an unbounded region.
    infinite_group = np.zeros(n_groups, dtype=bool)
    infinite_group[codes[contributing & ~finite]] = True
    volumes[infinite_group] = np.inf
    keep = contributing & finite & ~infinite_group[codes]
    k = x.shape[1]
    if k in (2, 3):
        keep[keep] = _maybe_on_front(x[keep], codes[keep], n_groups)  # dominated points add no volume
    xs, gs = x[keep], codes[keep]
    if len(xs) == 0:
        return volumes
    if k == 1:
        # The volume is a length: from each group's best value to the reference.
        best = np.full(n_groups, np.inf)
        np.minimum.at(best, gs, xs[:, 0])
        present = np.isfinite(best)
        volumes[present] = ref[0] - best[present]
    elif k == 2:
        volumes += _hypervolume_2d(xs[:, 0], xs[:, 1], gs, n_groups, ref[0], ref[1])
    else:
        on = _front_3d(xs, gs, n_groups)
        xs, gs = xs[on], gs[on]
        order = _group_order(gs, n_groups)
        bounds = np.flatnonzero(np.diff(gs[order])) + 1
        for members in np.split(order, bounds):
            volumes[gs[members[0]]] = _hypervolume_3d(xs[members], ref)
    return volumes


def _hypervolume_2d(
    a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    codes: npt.NDArray[np.int64],
    n_groups: int,
    ref_a: float,
    ref_b: float,
) -> npt.NDArray[np.float64]:
    """Area per group: sort by (group, a); the strip from a_i to the next a has height ref_b - min(b so far).

    Points must be strictly better than the reference. Tied ``a`` values give zero-width strips, so their order
    does not matter.
    """
    order = _group_order(codes, n_groups, within=np.argsort(a))
    a_s, b_s, g_s = a[order], b[order], codes[order]
    best_b = pd.Series(b_s).groupby(g_s, sort=False).cummin().to_numpy()
    next_a = np.empty_like(a_s)
    next_a[:-1] = a_s[1:]
    last_in_group = np.ones(len(a_s), dtype=bool)
    last_in_group[:-1] = g_s[1:] != g_s[:-1]
    next_a[last_in_group] = ref_a
    strips = (next_a - a_s) * (ref_b - best_b)
    return np.bincount(g_s, weights=strips, minlength=n_groups)


def _hypervolume_3d(x: npt.NDArray[np.float64], ref: npt.NDArray[np.float64]) -> float:
    """Volume of finite points strictly better than ``ref``: sweep over the third objective (HV3D-style).

    The points seen so far, projected on the first two objectives, form a staircase kept in two sorted lists
    (``xs`` ascending, ``ys`` descending, with sentinels). Inserting a point adds the area between the old
    staircase and the point's quadrant and removes the steps it dominates; each step is added and removed at
    most once. The volume is the sum of area x distance to the next point's third objective.
    """
    order = np.lexsort((x[:, 1], x[:, 0], x[:, 2]))
    a_list, b_list, c_list = (x[order, j].tolist() for j in range(3))
    ref_a, ref_b, ref_c = (float(v) for v in ref)
    xs: list[float] = [-np.inf, ref_a]
    ys: list[float] = [ref_b, -np.inf]
    area = 0.0
    volume = 0.0
    for i, (a, b, c) in enumerate(zip(a_list, b_list, c_list)):
        pos = bisect.bisect_right(xs, a) - 1  # step whose x-range [xs[pos], xs[pos+1]) contains a
        if ys[pos] > b:  # not dominated by the staircase
            gain = (xs[pos + 1] - a) * (ys[pos] - b)
            end = pos + 1
            while ys[end] > b:
                gain += (xs[end + 1] - xs[end]) * (ys[end] - b)
                end += 1
            lo = pos if xs[pos] == a else pos + 1  # the step at exactly a is dominated too
            hi = end + 1 if ys[end] == b else end  # so is a later step at exactly height b
            xs[lo:hi] = [a]
            ys[lo:hi] = [b]
            area += gain
        next_c = c_list[i + 1] if i + 1 < len(c_list) else ref_c
        volume += area * (next_c - c)
    return volume
