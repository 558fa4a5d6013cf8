"""Budget-fair ASHA, fed synthetic results through the real Tune scheduler API (no Ray cluster needed)."""

from __future__ import annotations

import math
import random

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from sweeps.scheduler import (
    BudgetFairASHA,
    SchedulerStateCallback,
    dominates,
    rung_decision,
    rung_milestones,
)

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def trial(budget: float) -> Trial:
    return Trial("__fake", config={"budget": budget}, stub=True)


def result(epoch: int, acc: float) -> dict:
    return {"epoch": float(epoch), "mean_val_acc": acc, "training_iteration": epoch}


def feed(scheduler, t: Trial, epoch: int, acc: float) -> str:
    return scheduler.on_trial_result(None, t, result(epoch, acc))


def make(*trials: Trial, **kw) -> BudgetFairASHA:
    """A budget-fair ASHA over ``mean_val_acc`` (8 epochs, rungs 1/2/4 unless ``kw`` says otherwise), ``trials`` added."""
    s = BudgetFairASHA("mean_val_acc", "max", **{"max_t": 8, "grace_period": 1, "reduction_factor": 2, **kw})
    for t in trials:
        s.on_trial_add(None, t)
    return s


def test_low_budget_trial_on_the_front_is_not_stopped_for_being_less_accurate():
    """The property the issue asks for: plain ASHA stops the cheap trial, budget-fair ASHA keeps it."""
    high_a, high_b, low = trial(1.0), trial(0.75), trial(0.25)
    fair = make()
    plain = ASHAScheduler(metric="mean_val_acc", mode="max", time_attr="epoch", max_t=8, grace_period=1,
                          reduction_factor=2)
    for s in (fair, plain):
        for t in (high_a, high_b, low):
            s.on_trial_add(None, t)
        assert feed(s, high_a, 1, 0.60) == CONTINUE
        assert feed(s, high_b, 1, 0.62) == CONTINUE
    # The budget-0.25 trial is far less accurate than both, but no cheaper-or-equal trial beats it: it is on the front.
    assert feed(plain, low, 1, 0.31) == STOP
    assert feed(fair, low, 1, 0.31) == CONTINUE
    assert low.trial_id not in fair.stopped


def test_same_budget_behaves_like_asha():
    """With one budget, the rule is ASHA's: keep the top 1/rf of the rung."""
    fair, plain = make(), ASHAScheduler(metric="mean_val_acc", mode="max", time_attr="epoch", max_t=8,
                                        grace_period=1, reduction_factor=2)
    rng = random.Random(0)
    trials = [trial(0.5) for _ in range(12)]
    for t in trials:
        fair.on_trial_add(None, t)
        plain.on_trial_add(None, t)
    for t in trials:
        acc = round(rng.random(), 3)
        assert feed(fair, t, 1, acc) == feed(plain, t, 1, acc)


def test_dominated_low_budget_trial_is_stopped():
    """Budget-fairness is not immunity: a cheap trial beaten by an equally cheap one still stops."""
    a, b, c = trial(0.25), trial(0.25), trial(1.0)
    s = make(a, b, c, peers="cheaper_or_equal")
    assert feed(s, a, 1, 0.50) == CONTINUE
    assert feed(s, c, 1, 0.40) == STOP  # a is cheaper *and* more accurate: c is dominated and in the bottom half
    assert feed(s, b, 1, 0.30) == STOP
    assert s.stopped == {c.trial_id: 1, b.trial_id: 1}


def test_same_budget_peers_keep_one_bracket_per_budget():
    """Grid mode: a trial is never stopped because a cheaper trial was ahead, only by trials of its own budget."""
    cheap, expensive, expensive_2 = trial(0.25), trial(1.0), trial(1.0)
    s = make(cheap, expensive, expensive_2, peers="same_budget")
    assert feed(s, cheap, 1, 0.50) == CONTINUE
    assert feed(s, expensive, 1, 0.40) == CONTINUE  # alone at budget 1.0; cheaper_or_equal would stop it
    assert feed(s, expensive_2, 1, 0.30) == STOP  # behind the trial of its own budget
    assert s.stopped == {expensive_2.trial_id: 1}
    assert "peers=same_budget" in s.debug_string()


def test_same_budget_rung_decision_is_asha_within_each_budget():
    rng = random.Random(2)
    budgets = [0.25, 0.5, 0.75, 1.0]
    for _ in range(200):
        recorded = {str(i): (rng.random(), rng.choice(budgets)) for i in range(rng.randint(0, 8))}
        new = (rng.random(), rng.choice(budgets))
        same = {k: p for k, p in recorded.items() if p[1] == new[1]}
        assert rung_decision(recorded, new, 2, "same_budget") == rung_decision(same, new, 2, "same_budget")
        assert rung_decision(same, new, 2, "same_budget") == rung_decision(same, new, 2, "cheaper_or_equal")


def test_unknown_peers_is_refused():
    with pytest.raises(ValueError, match="peers must be one of same_budget, cheaper_or_equal"):
        make(peers="all")


def test_driver_ranks_a_grid_per_budget_and_a_continuum_by_dominance():
    from sweeps.config import resolve
    from sweeps.tuner import build_scheduler

    grid = build_scheduler(resolve("smoke", None, {"mode": "grid"}), epochs=3)
    pareto = build_scheduler(resolve("smoke", None, {"mode": "pareto", "objective": "score"}), epochs=3)
    assert (grid.peers, pareto.peers) == ("same_budget", "cheaper_or_equal")
    # Rungs rank what a trial would deliver now (its budget enforced), for the sweep's objective.
    assert (grid.metric, pareto.metric) == ("feasible_mean_val_acc", "feasible_score")


def test_each_rung_judged_once_and_final_epoch_never():
    good, bad = trial(0.5), trial(0.5)
    s = make(good, bad, max_t=4)
    assert s.milestones == [1, 2]  # 4 (the last epoch) is not a rung: the final, pruned report always arrives
    assert feed(s, good, 1, 0.9) == CONTINUE
    assert feed(s, good, 2, 0.9) == CONTINUE
    assert feed(s, good, 3, 0.9) == CONTINUE  # between rungs: nothing new to judge
    assert feed(s, bad, 4, 0.1) == CONTINUE  # its first report is the last epoch: recorded, never stopped
    assert feed(s, bad, 4, 0.1) == CONTINUE


def test_nan_metric_ranks_last():
    a, b = trial(0.5), trial(0.5)
    s = make(a, b)
    feed(s, a, 1, 0.2)
    assert feed(s, b, 1, math.nan) == STOP


def test_min_mode_and_missing_keys():
    s = BudgetFairASHA("loss", "min", max_t=4)
    a, b = trial(0.5), trial(0.5)
    for t in (a, b):
        s.on_trial_add(None, t)
    assert s.on_trial_result(None, a, {"epoch": 1.0, "loss": 0.5}) == CONTINUE
    assert s.on_trial_result(None, b, {"epoch": 1.0, "loss": 0.9}) == STOP
    assert s.on_trial_result(None, b, {"loss": 0.9}) == CONTINUE  # no epoch: no decision


def test_state_round_trip_keeps_rungs():
    a, b = trial(0.5), trial(0.5)
    s = make(a, b)
    feed(s, a, 1, 0.8)
    restored = make(b)
    SchedulerStateCallback(restored).set_state(SchedulerStateCallback(s).get_state())
    assert feed(restored, b, 1, 0.1) == STOP  # the restored rung still remembers a


def test_rung_milestones():
    assert rung_milestones(1, 2, 8) == [1, 2, 4]
    assert rung_milestones(2, 3, 60) == [2, 6, 18, 54]
    assert rung_milestones(3, 2, 3) == []


def test_rung_decision_never_stops_a_nondominated_point():
    rng = random.Random(1)
    for _ in range(200):
        recorded = {str(i): (rng.random(), rng.choice([0.25, 0.5, 0.75, 1.0])) for i in range(rng.randint(0, 8))}
        new = (rng.random(), rng.choice([0.25, 0.5, 0.75, 1.0]))
        if not any(dominates(p, new) for p in recorded.values()):
            assert rung_decision(recorded, new, 2) == CONTINUE
