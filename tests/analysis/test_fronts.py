"""The report's data step: per-target fronts and hypervolumes against brute force, budget groups, left-out trials."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.fronts import ACROSS_BUDGETS, TARGET_MEAN, TARGET_SCORE, budget_groups, pareto_data, targets_of
from analysis.pareto import hypervolume
from analysis.table import TrialRecord, build_table
from bap import metrics as M

DOMAINS = ("alpha", "beta", "gamma")


def random_table(seed: int, n: int = 80, budgets: tuple[float, ...] = (0.25, 0.5, 1.0), score: bool = True,
                 ) -> pd.DataFrame:
    """Trials with coarse (tie-heavy) values, exact repeats, unfinished trials and missing domain metrics."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        if i and rng.random() < 0.15:  # an exact repeat of an earlier trial
            earlier = records[int(rng.integers(len(records)))]
            records.append(TrialRecord("s", f"t{i:03d}", earlier.status, dict(earlier.metrics)))
            continue
        budget = float(rng.choice(budgets))
        metrics: dict[str, float] = {M.BUDGET: budget, M.EPOCH: 3.0}
        for d in DOMAINS:
            ratio = float(np.round(budget * rng.uniform(0.5, 1.0), 1))
            metrics[M.domain_metric(M.VAL_ACC, d)] = float(np.round(rng.uniform(0.3, 0.5) + 0.4 * ratio, 1))
            metrics[M.domain_metric(M.PARAMS, d)] = ratio * 1e6
            metrics[M.domain_metric(M.MACS, d)] = float(np.round(ratio * rng.uniform(0.8, 1.2), 1)) * 5e8
            metrics[M.domain_metric(M.PARAMS_RATIO, d)] = ratio
            metrics[M.domain_metric(M.MACS_RATIO, d)] = metrics[M.domain_metric(M.MACS, d)] / 5e8
        if rng.random() < 0.1:  # a domain that was never evaluated
            del metrics[M.domain_metric(M.VAL_ACC, DOMAINS[0])]
        metrics[M.MEAN_VAL_ACC] = float(np.round(rng.uniform(0.3, 0.9), 1))
        metrics[M.SCORE] = float(np.round(rng.uniform(0, 3000), -2)) if score else float("nan")
        metrics[M.UNION_PARAMS_RATIO] = float(np.round(rng.uniform(0.2, 1.2), 1))
        metrics[M.UNION_MACS_RATIO] = float(np.round(rng.uniform(0.2, 1.0), 1))
        metrics[M.UNION_PARAMS] = metrics[M.UNION_PARAMS_RATIO] * 1e6
        metrics[M.UNION_MACS] = metrics[M.UNION_MACS_RATIO] * 5e8
        finished = rng.random() > 0.15
        if finished:
            metrics[M.PRUNED_AGREEMENT] = 1.0
        records.append(TrialRecord("s", f"t{i:03d}", "FINISHED" if finished else "KILLED", metrics))
    return build_table(records)


def brute_front(acc: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """On the front iff no other point is >= in accuracy, <= in every cost and strictly better somewhere."""
    n = len(acc)
    on = np.ones(n, dtype=bool)
    for i, j in itertools.product(range(n), range(n)):
        no_worse = acc[j] >= acc[i] and np.all(costs[j] <= costs[i])
        better = acc[j] > acc[i] or np.any(costs[j] < costs[i])
        if no_worse and better:
            on[i] = False
    return on


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fronts_match_brute_force_per_target_and_budget(seed: int) -> None:
    table = random_table(seed)
    data = pareto_data(table)
    assert [t.name for t in data.targets] == [*DOMAINS, TARGET_MEAN, TARGET_SCORE]
    costs = {"params": ["params_ratio"], "macs": ["macs_ratio"], "3d": ["params_ratio", "macs_ratio"]}
    for target in data.targets:
        points = data.points_of(target.name)
        # Only finished trials with the target's metrics, each once.
        expected_rows = table.index[table["finished"] & table[target.accuracy].notna()]
        assert sorted(points["trial"]) == sorted(expected_rows)
        for name, columns in costs.items():
            acc, cost = points["accuracy"].to_numpy(), points[columns].to_numpy()
            np.testing.assert_array_equal(points[f"front_{name}"].to_numpy(), brute_front(acc, cost))
            for group in data.budget_groups:
                members = (points["budget_group"] == group).to_numpy()
                np.testing.assert_array_equal(points[f"budget_front_{name}"].to_numpy()[members],
                                              brute_front(acc[members], cost[members]))


@pytest.mark.parametrize("seed", [0, 3])
def test_hypervolumes_per_target_and_budget(seed: int) -> None:
    table = random_table(seed)
    data = pareto_data(table)
    assert data.reference == {"accuracy": 0.0, "params_ratio": 1.1, "macs_ratio": 1.1}
    senses = {"params": ("max", "min"), "macs": ("max", "min"), "3d": ("max", "min", "min")}
    columns = {"params": ["accuracy", "params_ratio"], "macs": ["accuracy", "macs_ratio"],
               "3d": ["accuracy", "params_ratio", "macs_ratio"]}
    for row in data.hypervolumes.itertuples(index=False):
        points = data.points_of(row.target)
        if row.budget_group != ACROSS_BUDGETS:
            points = points[points["budget_group"] == row.budget_group]
        assert row.trials == len(points)
        for name in senses:
            reference = [data.reference[c] for c in columns[name]]
            expected = hypervolume(points[columns[name]].to_numpy(), senses[name], reference)
            assert getattr(row, f"hv_{name}") == pytest.approx(expected, rel=1e-12, abs=1e-12)
            flag = f"front_{name}" if row.budget_group == ACROSS_BUDGETS else f"budget_front_{name}"
            assert getattr(row, f"front_{name}") == int(points[flag].sum())


def test_hand_computed_example() -> None:
    """Three finished trials, one domain: fronts and areas by hand."""
    rows = [(0.6, 0.5, 0.4), (0.8, 1.0, 0.5), (0.5, 0.6, 0.6)]  # accuracy, params ratio, MACs ratio
    records = []
    for i, (acc, p, m) in enumerate(rows):
        metrics = {M.BUDGET: 0.5, M.PRUNED_AGREEMENT: 1.0, M.MEAN_VAL_ACC: acc, M.UNION_PARAMS_RATIO: p,
                   M.UNION_MACS_RATIO: m, M.UNION_PARAMS: p * 100, M.UNION_MACS: m * 10,
                   M.domain_metric(M.VAL_ACC, "d"): acc, M.domain_metric(M.PARAMS_RATIO, "d"): p,
                   M.domain_metric(M.MACS_RATIO, "d"): m, M.domain_metric(M.PARAMS, "d"): p * 100,
                   M.domain_metric(M.MACS, "d"): m * 10}
        records.append(TrialRecord("s", f"t{i}", "FINISHED", metrics))
    data = pareto_data(build_table(records))
    mean = data.points_of(TARGET_MEAN)
    assert mean["front_params"].tolist() == [True, True, False]
    assert mean["front_3d"].tolist() == [True, True, False]
    hv = data.hypervolumes.set_index(["target", "budget_group"])
    # acc vs params, reference (0, 1.1): 0.6 * (1.1 - 0.5) + (0.8 - 0.6) * (1.1 - 1.0) = 0.36 + 0.02
    assert hv.loc[("mean", "all"), "hv_params"] == pytest.approx(0.38)
    # acc vs MACs: 0.6 * (1.1 - 0.4) + 0.2 * (1.1 - 0.5) = 0.42 + 0.12
    assert hv.loc[("mean", "0.5"), "hv_macs"] == pytest.approx(0.54)
    assert TARGET_SCORE not in [t.name for t in data.targets]  # no trial has a score


def test_unfinished_and_missing_metrics_are_left_out_and_counted() -> None:
    table = random_table(5)
    data = pareto_data(table)
    finished = table["finished"]
    missing = table[M.domain_metric(M.VAL_ACC, DOMAINS[0])].isna()
    assert data.left_out[DOMAINS[0]] == {"unfinished": int((~finished & ~missing).sum()),
                                        "missing metrics": int(missing.sum())}
    assert data.left_out[TARGET_MEAN] == {"unfinished": int((~finished).sum()), "missing metrics": 0}
    everything = pareto_data(table, include_unfinished=True)
    assert len(everything.points_of(TARGET_MEAN)) == len(table)
    assert everything.left_out[TARGET_MEAN]["unfinished"] == 0


def test_budget_groups_grid_binned_and_missing() -> None:
    labels, order = budget_groups(pd.Series([0.5, 0.25, 1.0, 0.25]))
    assert labels.tolist() == ["0.5", "0.25", "1", "0.25"] and order == ["0.25", "0.5", "1"]
    continuous = pd.Series(np.linspace(0.1, 0.9, 40))
    labels, order = budget_groups(continuous, max_groups=4)
    assert order == ["0.10-0.30", "0.30-0.50", "0.50-0.70", "0.70-0.90"]
    assert labels.iloc[0] == order[0] and labels.iloc[-1] == order[-1]
    assert labels.value_counts().to_dict() == {label: 10 for label in order}
    labels, order = budget_groups(pd.Series([0.5, np.nan]))
    assert labels.tolist() == ["0.5", "?"] and order == ["0.5", "?"]


def test_a_continuous_budget_sweep_has_per_range_fronts() -> None:
    table = random_table(7, budgets=tuple(np.round(np.linspace(0.1, 1.0, 19), 3)), score=False)
    data = pareto_data(table, max_budget_groups=3)
    assert len(data.budget_groups) == 3
    assert set(data.points["budget_group"]) <= set(data.budget_groups)
    assert [t.name for t in targets_of(table)] == [*DOMAINS, TARGET_MEAN]  # no score: every score is NaN


def test_no_usable_trial_gives_empty_points_and_zero_volumes() -> None:
    metrics = {M.MEAN_VAL_ACC: 0.5, M.UNION_PARAMS_RATIO: 0.5, M.UNION_MACS_RATIO: 0.5, M.BUDGET: 0.5,
               M.domain_metric(M.VAL_ACC, "a"): 0.5, M.domain_metric(M.PARAMS_RATIO, "a"): 0.5,
               M.domain_metric(M.MACS_RATIO, "a"): 0.5}
    data = pareto_data(build_table([TrialRecord("s", "t", "KILLED", metrics)]))
    assert data.points.empty and "front_3d" in data.points
    assert data.hypervolumes[["trials", "hv_params", "hv_3d"]].eq(0).all().all()
    assert data.left_out[TARGET_MEAN] == {"unfinished": 1, "missing metrics": 0}
