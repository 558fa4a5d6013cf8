"""Pareto fronts and hypervolumes against plain brute-force definitions."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis import pareto
from analysis.pareto import (
    fronts_by_group,
    hypervolume,
    hypervolume_by_group,
    pareto_front_2d,
    pareto_mask,
    reference_point,
)

SENSE_MIXES = {
    1: [("min",), ("max",)],
    2: [("min", "min"), ("min", "max"), ("max", "max")],
    3: [("min", "min", "min"), ("max", "min", "min"), ("max", "max", "min")],
    4: [("min", "max", "min", "max")],
}


@pytest.fixture(params=["sized", "forced"])
def prefilter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test as is (the binning prefilter only runs on large inputs) and with the prefilter always on."""
    if request.param == "forced":
        monkeypatch.setattr(pareto, "_PREFILTER_MIN_POINTS", 0)
    return request.param


# ---- brute-force references, written from the definitions -----------------------------------------------------


def to_min(points: np.ndarray, senses: tuple[str, ...]) -> np.ndarray:
    return np.where(np.array(senses) == "max", -points, points)


def brute_front(points: np.ndarray, senses: tuple[str, ...]) -> np.ndarray:
    """O(n^2): i is on the front iff it has no NaN and no j is <= everywhere and < somewhere."""
    x = to_min(points, senses)
    n = len(x)
    on = np.zeros(n, dtype=bool)
    for i in range(n):
        if np.isnan(x[i]).any():
            continue
        on[i] = not any(
            not np.isnan(x[j]).any() and (x[j] <= x[i]).all() and (x[j] < x[i]).any() for j in range(n)
        )
    return on


def brute_hypervolume(points: np.ndarray, senses: tuple[str, ...], reference: tuple[int, ...]) -> int:
    """Integer points and reference: count the unit cells [u, u+1) dominated by some point (p <= u)."""
    x = to_min(points, senses)
    ref = to_min(np.array(reference, dtype=float), senses)
    x = x[~np.isnan(x).any(axis=1) & (x < ref).all(axis=1)]
    if len(x) == 0:
        return 0
    ranges = [range(int(x[:, j].min()), int(ref[j])) for j in range(x.shape[1])]
    return sum(bool((x <= np.array(cell)).all(axis=1).any()) for cell in itertools.product(*ranges))


def grid_points(rng: np.random.Generator, n: int, k: int, levels: int = 5) -> np.ndarray:
    """Points on a small integer grid: many ties and exact duplicates, plus a few explicit copies."""
    x = rng.integers(0, levels, size=(n, k)).astype(float)
    if n >= 4:
        x[rng.integers(0, n, size=n // 4)] = x[rng.integers(0, n, size=n // 4)]
    return x


# ---- fronts -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 2, 10, 200])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_pareto_mask_matches_brute_force(seed: int, n: int, k: int, prefilter: str) -> None:
    rng = np.random.default_rng(1000 * seed + 10 * n + k)
    x = grid_points(rng, n, k)
    for senses in SENSE_MIXES[k]:
        np.testing.assert_array_equal(pareto_mask(x, senses), brute_front(x, senses), err_msg=str(senses))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [2, 3, 4])
def test_pareto_mask_continuous_with_nan_rows(seed: int, k: int, prefilter: str) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, k))
    x[:, -1] -= x[:, 0]  # anti-correlated: larger fronts
    x[rng.integers(0, 300, size=20), rng.integers(0, k, size=20)] = np.nan
    x[:5] = x[5]  # duplicates of a (possibly) front point
    for senses in SENSE_MIXES[k]:
        np.testing.assert_array_equal(pareto_mask(x, senses), brute_front(x, senses))


@pytest.mark.parametrize("k", [2, 3, 4])
def test_large_front_exact(k: int) -> None:
    """Every point on a simplex-like surface is on the front; one nudged point is not."""
    rng = np.random.default_rng(7)
    x = rng.dirichlet(np.ones(k), size=2000)
    mask = pareto_mask(x, "min")
    assert mask.all()
    x[0] = x[1] + 1e-9
    mask = pareto_mask(x, "min")
    assert not mask[0] and mask[1:].all()


@pytest.mark.parametrize("k", [2, 3])
def test_prefilter_keeps_the_front_and_drops_most_of_a_sweep(k: int) -> None:
    rng = np.random.default_rng(4)
    cost = rng.integers(1, 1000, size=(20_000, k - 1)) / 1000
    acc = np.round(np.sqrt(cost.mean(axis=1)) + rng.normal(0, 0.05, len(cost)), 3)
    x = np.column_stack([cost, -acc])  # minimisation
    x[:3] = [np.inf] * (k - 1) + [-2.0]  # infinite rows are never dropped
    codes = rng.integers(0, 3, size=len(x))
    keep = pareto._maybe_on_front(x, codes, 3)
    assert keep.sum() < len(x) // 10 and keep[:3].all()
    for group in range(3):
        members = np.flatnonzero(codes == group)
        front = pareto._front_kd(x[members])
        assert keep[members][front].all()


def test_front_3d_paths_agree_with_block_method() -> None:
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(5000, 3)), 1)
    codes = np.zeros(len(x), dtype=np.int64)
    np.testing.assert_array_equal(pareto._front_3d(x, codes, 1), pareto._front_kd(x))


def test_dominated_by_earlier_against_brute_force() -> None:
    rng = np.random.default_rng(11)
    for m in [1, 2, 3, 5, 64, 257]:
        second = rng.integers(0, 8, size=m)
        third = rng.integers(0, 8, size=m)
        expected = [any(second[j] <= second[i] and third[j] <= third[i] for j in range(i)) for i in range(m)]
        np.testing.assert_array_equal(pareto._dominated_by_earlier(second, third), expected)


def test_dominated_by_earlier_many_blocks() -> None:
    """More than 2**16 blocks at the lowest level takes the wide-integer sort path."""
    m = (1 << 17) + 5
    chain = np.arange(m)
    assert pareto._dominated_by_earlier(chain, chain)[1:].all()
    assert not pareto._dominated_by_earlier(chain, chain[::-1].copy()).any()


def test_pareto_front_2d_is_min_cost_max_acc() -> None:
    cost = [0.5, 0.5, 0.3, 0.9, 0.3, np.nan]
    acc = [0.8, 0.7, 0.6, 0.8, 0.6, 0.99]
    # (0.5, 0.8) beats (0.5, 0.7) and (0.9, 0.8); both copies of (0.3, 0.6) are kept; NaN is off.
    np.testing.assert_array_equal(pareto_front_2d(cost, acc), [True, False, True, False, True, False])
    with pytest.raises(ValueError, match="same length"):
        pareto_front_2d([1.0, 2.0], [1.0])


# ---- hypervolume ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 2, 10, 60])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_hypervolume_matches_cell_count(seed: int, n: int, k: int, prefilter: str) -> None:
    rng = np.random.default_rng(1000 * seed + 10 * n + k)
    x = grid_points(rng, n, k, levels=6)
    for senses in SENSE_MIXES[k]:
        # Reference inside the grid on purpose: some points are not strictly better and must be ignored.
        reference = tuple(0 if s == "max" else 5 for s in senses)
        expected = brute_hypervolume(x, senses, reference)
        assert hypervolume(x, senses, reference) == pytest.approx(expected, abs=1e-9), senses


def test_hypervolume_3d_sweep_on_all_points_matches_cell_count() -> None:
    """The sweep itself (without the front prefilter) handles dominated points and ties."""
    rng = np.random.default_rng(5)
    x = grid_points(rng, 150, 3, levels=7)
    ref = np.array([7.0, 7.0, 7.0])
    assert pareto._hypervolume_3d(x, ref) == brute_hypervolume(x, ("min",) * 3, (7, 7, 7))


def test_hypervolume_hand_computed_2d() -> None:
    # cost (min) / accuracy (max), reference cost 1.0, accuracy 0.0. Strips in cost order:
    #   [0.2, 0.4) x acc 0.4 = 0.08;  [0.4, 0.7) x acc 0.7 = 0.21;  [0.7, 1.0) x acc 0.9 = 0.27  ->  0.56
    points = [[0.2, 0.4], [0.4, 0.7], [0.7, 0.9]]
    assert hypervolume(points, ("min", "max"), (1.0, 0.0)) == pytest.approx(0.56)


def test_hypervolume_hand_computed_3d() -> None:
    # Unit cube reference. (0, 0, 0.5) covers 1 * 1 * 0.5 = 0.5; (0.5, 0.5, 0) covers 0.5 * 0.5 * 1 = 0.25;
    # they overlap on [0.5, 1]^3 = 0.125  ->  0.5 + 0.25 - 0.125 = 0.625.
    points = [[0.0, 0.0, 0.5], [0.5, 0.5, 0.0]]
    assert hypervolume(points, "min", (1.0, 1.0, 1.0)) == pytest.approx(0.625)


def test_hypervolume_continuous_2d_and_3d_agree_with_inclusion_exclusion() -> None:
    rng = np.random.default_rng(9)
    for k in (2, 3):
        x = rng.random((6, k))
        ref = np.ones(k)
        total = 0.0
        for size in range(1, len(x) + 1):
            for subset in itertools.combinations(range(len(x)), size):
                corner = x[list(subset)].max(axis=0)
                total += (-1) ** (size + 1) * np.prod(ref - corner)
        assert hypervolume(x, "min", ref) == pytest.approx(total, rel=1e-12)


# ---- edge cases -------------------------------------------------------------------------------------------------


def test_empty_input() -> None:
    assert pareto_mask(np.empty((0, 2)), "min").shape == (0,)
    assert pareto_mask([], ("min", "max")).shape == (0,)
    assert pareto_mask(np.empty((0, 3)), "max").shape == (0,)
    assert pareto_mask(np.empty((0, 5)), "max").shape == (0,)
    assert hypervolume(np.empty((0, 2)), "min", (1.0, 1.0)) == 0.0
    assert hypervolume(np.empty((0, 3)), "min", (1.0, 1.0, 1.0)) == 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_single_and_identical_points(k: int) -> None:
    assert pareto_mask(np.full((1, k), 0.5), "max").tolist() == [True]
    assert pareto_mask(np.full((7, k), 0.5), "max").all()
    if k <= 3:
        assert hypervolume(np.full((1, k), 0.5), "min", (1.0,) * k) == pytest.approx(0.5**k)
        assert hypervolume(np.full((7, k), 0.5), "min", (1.0,) * k) == pytest.approx(0.5**k)


def test_points_not_better_than_reference_contribute_nothing() -> None:
    points = [[1.0, 0.5], [0.5, 1.0], [2.0, 2.0]]  # each ties or exceeds the reference in some objective
    assert hypervolume(points, "min", (1.0, 1.0)) == 0.0
    points3 = [[0.5, 0.5, 1.0], [1.5, 0.0, 0.0]]
    assert hypervolume(points3, "min", (1.0, 1.0, 1.0)) == 0.0
    assert hypervolume([[0.2, 0.3]], ("min", "max"), (0.1, 0.0)) == 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_nan_rows_never_on_front_and_ignored_by_hypervolume(k: int) -> None:
    x = np.array([[0.5] * k, [np.nan] * k, [0.0] * (k - 1) + [np.nan]])
    np.testing.assert_array_equal(pareto_mask(x, "min"), [True, False, False])
    assert not pareto_mask(np.full((3, k), np.nan), "min").any()
    if k <= 3:
        assert hypervolume(x, "min", (1.0,) * k) == pytest.approx(0.5**k)


def test_infinities(prefilter: str) -> None:
    x = np.array([[0.0, np.inf], [1.0, 1.0], [-np.inf, 5.0]])
    np.testing.assert_array_equal(pareto_mask(x, "min"), [False, True, True])
    np.testing.assert_array_equal(pareto_mask([[0.0, np.inf], [1.0, 1.0]], "min"), [True, True])
    assert hypervolume(x, "min", (10.0, 10.0)) == np.inf
    assert hypervolume([[0.5, np.inf]], ("min", "max"), (1.0, 0.0)) == np.inf


def test_hypervolume_rejects_k_above_3() -> None:
    with pytest.raises(ValueError, match=r"k in \(1, 2, 3\).*k=4"):
        hypervolume(np.zeros((3, 4)), "min", (1.0,) * 4)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="one of"):
        pareto_mask(np.zeros((2, 2)), ("min", "maximise"))
    with pytest.raises(ValueError, match="2 objectives"):
        pareto_mask(np.zeros((2, 2)), ("min",))
    with pytest.raises(ValueError, match=r"\(n, k\)"):
        pareto_mask(np.zeros(3), "min")
    with pytest.raises(ValueError, match="finite"):
        hypervolume(np.zeros((2, 2)), "min", (1.0, np.nan))
    with pytest.raises(ValueError, match="finite"):
        hypervolume(np.zeros((2, 2)), "min", (1.0,))


def test_reference_point() -> None:
    assert reference_point(("max", "min", "min")) == (0.0, 1.1, 1.1)
    objectives = {"mean_val_acc": "max", "union_params_ratio": "min"}
    assert reference_point(objectives) == {"mean_val_acc": 0.0, "union_params_ratio": 1.1}
    assert reference_point("min", cost_ceiling=2.0) == (2.0,)
    assert reference_point(["max"], acc_floor=0.1) == (0.1,)
    with pytest.raises(ValueError, match="one of"):
        reference_point({"acc": "up"})


# ---- grouped helpers --------------------------------------------------------------------------------------------


def make_frame(seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "domain": rng.choice(["svhn", "cifar100", "aircraft", None], size=n),
            "budget": rng.choice([0.25, 0.5], size=n),
            "acc": rng.integers(0, 6, size=n) / 5,
            "params_ratio": rng.integers(1, 6, size=n) / 5,
            "macs_ratio": rng.integers(1, 6, size=n) / 5,
            "usage": rng.integers(0, 4, size=n) / 4,
        },
        index=pd.Index(rng.permutation(n) * 3, name="trial"),  # non-default index: results must align
    )
    df.loc[df.sample(frac=0.05, random_state=seed).index, "acc"] = np.nan
    return df


OBJECTIVE_SETS = [
    {"acc": "max"},
    {"acc": "max", "params_ratio": "min"},
    {"acc": "max", "params_ratio": "min", "macs_ratio": "min"},
    {"acc": "max", "params_ratio": "min", "macs_ratio": "min", "usage": "min"},
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("objectives", OBJECTIVE_SETS, ids=lambda o: f"k{len(o)}")
@pytest.mark.parametrize(
    "by", [None, "domain", ["domain", "budget"]], ids=["none", "domain", "domain+budget"]
)
def test_fronts_by_group_agrees_with_per_group_calls(seed: int, objectives: dict, by, prefilter: str) -> None:
    df = make_frame(seed)
    result = fronts_by_group(df, objectives, by=by)
    assert result.index.equals(df.index) and result.dtype == bool and result.name == "on_front"
    groups = [(None, df)] if by is None else df.groupby(by, dropna=False)
    for _, part in groups:
        expected = pareto_mask(part[list(objectives)].to_numpy(), list(objectives.values()))
        np.testing.assert_array_equal(result.loc[part.index].to_numpy(), expected)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("objectives", OBJECTIVE_SETS[:3], ids=lambda o: f"k{len(o)}")
@pytest.mark.parametrize(
    "by", [None, "domain", ["domain", "budget"]], ids=["none", "domain", "domain+budget"]
)
def test_hypervolume_by_group_agrees_with_per_group_calls(
    seed: int, objectives: dict, by, prefilter: str
) -> None:
    df = make_frame(seed)
    reference = reference_point(objectives)
    result = hypervolume_by_group(df, objectives, reference, by=by)
    assert result.name == "hypervolume"
    if by is None:
        assert result.index.tolist() == ["all"]
        groups = [("all", df)]
    else:
        grouped = df.groupby(by, dropna=False)
        assert result.index.equals(grouped.size().index)
        groups = list(grouped)
    for key, part in groups:
        expected = hypervolume(
            part[list(objectives)].to_numpy(), list(objectives.values()), list(reference.values())
        )
        assert result.loc[[key]].iloc[0] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    sequence_ref = hypervolume_by_group(df, objectives, list(reference.values()), by=by)
    pd.testing.assert_series_equal(result, sequence_ref)


def test_grouped_many_groups_and_unbalanced_sizes() -> None:
    """Thousands of groups (wide sort keys) and one large group in the same vectorised pass."""
    rng = np.random.default_rng(2)
    codes = np.concatenate([np.repeat(np.arange(70_000), 2), np.full(3000, 70_000)])
    x = rng.integers(0, 4, size=(len(codes), 3)).astype(float)
    for k in (2, 3):
        mask = pareto._front_mask(x[:, :k], codes, 70_001)
        for group in [0, 1, 34_567, 69_999, 70_000]:
            members = np.flatnonzero(codes == group)
            np.testing.assert_array_equal(mask[members], pareto_mask(x[members, :k], "min"))
        volumes = pareto._hypervolume_by_code(x[:, :k], codes, 70_001, np.full(k, 4.0))
        for group in [0, 34_567, 70_000]:
            members = np.flatnonzero(codes == group)
            assert volumes[group] == pytest.approx(hypervolume(x[members, :k], "min", (4.0,) * k))


def test_grouped_edge_cases() -> None:
    df = make_frame(0)
    empty = df.iloc[:0]
    assert fronts_by_group(empty, {"acc": "max", "params_ratio": "min"}, by="domain").empty
    assert hypervolume_by_group(empty, {"acc": "max"}, [0.0], by="domain").empty
    assert hypervolume_by_group(empty, {"acc": "max"}, [0.0]).tolist() == [0.0]
    with pytest.raises(ValueError, match="not in the frame"):
        fronts_by_group(df, {"accuracy": "max"})
    with pytest.raises(ValueError, match="empty"):
        fronts_by_group(df, {})
    with pytest.raises(ValueError, match="no value"):
        hypervolume_by_group(df, {"acc": "max", "params_ratio": "min"}, {"acc": 0.0})
    with pytest.raises(ValueError, match="k in"):
        hypervolume_by_group(df, OBJECTIVE_SETS[3], [0.0, 1.1, 1.1, 1.0])
