"""The one line that says what a sweep shows (driver summary and report)."""

from __future__ import annotations

import math

from analysis.headline import BudgetBest, headline


def test_budget_half_against_the_full_network():
    best = [BudgetBest(0.25, 0.85, 0.37, 0.62), BudgetBest(0.5, 0.949, 0.578, 0.783), BudgetBest(1.0, 0.975, 1.058, 1.0)]
    assert headline(best, 5, "params") == (
        "budget 0.5 (parameters): 5 domains in 0.58x the parameters and 0.78x the MACs (FLOPs) of one single-domain "
        "network, mean accuracy 0.949 vs 0.975 at budget 1.0")


def test_nearest_budget_below_one_without_a_full_one_or_a_unit():
    best = [BudgetBest(0.3, 0.9, 0.4, 0.6), BudgetBest(0.75, 0.95, 0.8, 0.9)]
    assert headline(best, 1) == ("budget 0.3: 1 domain in 0.40x the parameters and 0.60x the MACs (FLOPs) of one "
                                 "single-domain network, mean accuracy 0.900")


def test_nothing_to_say():
    assert headline([], 5) is None
    assert headline([BudgetBest(1.0, 0.97, 1.05, 1.0)], 5) is None  # no pruned budget
    assert headline([BudgetBest(0.5, math.nan, 0.5, 0.7)], 5) is None  # incomplete trial
