import math

import pytest
import torch

from bap import BudgetConstraint, SharingLoss, binarize, sharing_loss, union_fraction, usage

COSTS = torch.tensor([1.0, 1.0, 2.0, 4.0])


def test_usage_is_cost_weighted():
    assert usage(torch.tensor([1.0, 0.0, 0.0, 1.0]), COSTS).item() == pytest.approx(5 / 8)


def test_budget_penalty_zero_under_budget_and_pushes_switches_off_when_over():
    budget = BudgetConstraint([0.5, 0.5], penalty="lagrangian", dual_lr=1.0)
    scores = torch.tensor([0.1, 0.1, -0.1, 0.1], requires_grad=True)  # usage 6/8 > 0.5
    under = usage(torch.tensor([1.0, 1.0, 1.0, 0.0]), COSTS)  # 4/8 <= 0.5
    budget.dual_step(under, 0)
    assert budget.multipliers[0].item() == 0.0  # projected at 0
    assert budget.penalty(under, 0).item() == 0.0
    over = usage(binarize(scores, 0.0), COSTS)
    budget.dual_step(over, 1)
    assert budget.multipliers[1].item() == pytest.approx(0.25)
    penalty = budget.penalty(over, 1)
    assert penalty.item() == pytest.approx(0.25 * 0.25)
    penalty.backward()
    assert (scores.grad > 0).all()  # gradient descent lowers every score: switches go off
    budget.dual_step(torch.tensor(0.25), 1)  # back under budget: the multiplier decays
    assert budget.multipliers[1].item() == pytest.approx(0.0)


def test_hinge_penalty():
    hinge = BudgetConstraint([0.25], penalty="hinge", hinge_weight=2.0)
    assert hinge.penalty(torch.tensor(0.2), 0).item() == 0.0
    assert hinge.penalty(torch.tensor(0.5), 0).item() == pytest.approx(0.5)


@pytest.mark.parametrize("budget", [0.0, -0.1, 1.5, float("nan")])
def test_budget_outside_range(budget):
    with pytest.raises(ValueError, match=r"budget must be in \(0, 1\]"):
        BudgetConstraint([budget])


def test_bad_penalty_and_kind():
    with pytest.raises(ValueError, match="lagrangian.*hinge"):
        BudgetConstraint([0.5], penalty="l2")
    with pytest.raises(ValueError, match="none.*union.*intersection.*jaccard"):
        SharingLoss("dice")


SAME = torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0]])
DISJOINT = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
PARTIAL = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]])


def test_sharing_losses_on_hand_made_patterns():
    # Identical domains share everything: jaccard 0, intersection = 1 - usage, union = usage.
    assert sharing_loss("jaccard", SAME, COSTS).item() == pytest.approx(0.0)
    assert sharing_loss("intersection", SAME, COSTS).item() == pytest.approx(1 - 6 / 8)
    assert sharing_loss("union", SAME, COSTS).item() == pytest.approx(6 / 8)
    # Disjoint domains share nothing: jaccard and intersection are maximal (1), union covers everything.
    assert sharing_loss("jaccard", DISJOINT, COSTS).item() == pytest.approx(1.0)
    assert sharing_loss("intersection", DISJOINT, COSTS).item() == pytest.approx(1.0)
    assert sharing_loss("union", DISJOINT, COSTS).item() == pytest.approx(1.0)
    # Partial overlap: shared = {1, 2} cost 3, union = all, cost 8.
    assert sharing_loss("jaccard", PARTIAL, COSTS).item() == pytest.approx(1 - 3 / 8)
    assert sharing_loss("intersection", PARTIAL, COSTS).item() == pytest.approx(1 - 3 / 8)
    assert sharing_loss("none", PARTIAL, COSTS).item() == 0.0
    assert union_fraction(PARTIAL, COSTS).item() == pytest.approx(1.0)


def test_union_gradient_only_where_no_other_domain_uses_the_switch():
    scores = torch.tensor([[0.1, 0.1, -0.1, -0.1], [-0.1, 0.1, 0.1, -0.1]], requires_grad=True)
    sharing_loss("union", binarize(scores, 0.0), COSTS).backward()
    # Switch 1 is used by both domains: no push. Switch 0 used only by domain 0: pushed off for domain 0.
    assert scores.grad[0, 1].item() == 0.0 and scores.grad[1, 1].item() == 0.0
    assert scores.grad[0, 0].item() > 0 and scores.grad[1, 0].item() == 0.0


def test_sharing_weight_fixed_learnable_and_union_budget():
    fixed = SharingLoss("jaccard", weight=2.0)
    assert fixed(PARTIAL, COSTS).item() == pytest.approx(2 * (1 - 3 / 8))
    learnable = SharingLoss("jaccard", weight=0.5, learnable=True)
    assert learnable.weight == pytest.approx(0.5)
    loss = learnable(PARTIAL, COSTS)
    assert loss.item() == pytest.approx(0.5 * (1 - 3 / 8) + math.log(2.0))
    loss.backward()
    assert learnable.neg_log_weight.grad is not None
    capped = SharingLoss("intersection", union_budget=0.5)
    assert capped.raw(PARTIAL, COSTS).item() == pytest.approx((1 - 3 / 8) + 0.5)
    with pytest.raises(ValueError, match=r"union_budget must be in \(0, 1\]"):
        SharingLoss("union", union_budget=2.0)


def test_pairwise_jaccard_and_consensus_on_hand_made_patterns():
    # Two domains: pairwise Jaccard is the plain Jaccard; consensus is 0 when they agree, 1 where they all differ.
    for pattern in (SAME, DISJOINT, PARTIAL):
        assert sharing_loss("pairwise", pattern, COSTS).item() == pytest.approx(
            sharing_loss("jaccard", pattern, COSTS).item())
    assert sharing_loss("consensus", SAME, COSTS).item() == pytest.approx(0.0)
    assert sharing_loss("consensus", DISJOINT, COSTS).item() == pytest.approx(1.0)
    assert sharing_loss("consensus", PARTIAL, COSTS).item() == pytest.approx((1.0 + 4.0) / 8)  # switches 0 and 3
    three = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    # pairs: (0,1) IoU 1; (0,2), (1,2) IoU 1/2 -> 1 - 2/3
    assert sharing_loss("pairwise", three, COSTS).item() == pytest.approx(1 - (1 + 0.5 + 0.5) / 3)
    assert sharing_loss("pairwise", three[:1], COSTS).item() == 0.0  # one domain shares with nobody


def test_union_and_consensus_do_not_fight_the_budget_while_every_switch_is_on():
    """The reason the default is the union loss: with every switch on (the start of training) it pushes nothing on,
    while the Jaccard and intersection losses push every switch further on, against the budget."""
    scores = torch.full((3, 4), 0.1, requires_grad=True)
    for kind, pushes_on in (("union", False), ("consensus", False), ("jaccard", True), ("intersection", True),
                            ("pairwise", True)):
        scores.grad = None
        sharing_loss(kind, binarize(scores, 0.0), COSTS).backward()
        assert bool((scores.grad < 0).all()) is pushes_on, kind  # a negative gradient raises the scores: "on"


def test_annealed_target_goes_from_everything_to_the_budget():
    from bap.budget import BudgetSchedule

    schedule = BudgetSchedule.of(total_steps=100, anneal=0.3, recovery=0.2)
    assert (schedule.anneal_steps, schedule.enforce_step) == (30, 80)
    budgets = torch.tensor([0.5, 0.25])
    assert schedule.targets(budgets, 0).tolist() == [1.0, 1.0]
    assert schedule.targets(budgets, 15).tolist() == pytest.approx([0.75, 0.625])
    assert schedule.targets(budgets, 30).tolist() == schedule.targets(budgets, 99).tolist() == [0.5, 0.25]
    assert not schedule.frozen(79) and schedule.frozen(80) and schedule.frozen(99)
    plain = BudgetSchedule.of(total_steps=100, anneal=0.0, recovery=0.0)
    assert plain.enforce_step == 100 and plain.targets(budgets, 0).tolist() == [0.5, 0.25]
    assert BudgetSchedule.of(total_steps=3, anneal=0.3, recovery=0.5).enforce_step == 1  # at least one step trains
    assert BudgetSchedule.of(total_steps=3, anneal=0.0, recovery=0.99).enforce_step == 1


def test_penalty_and_dual_step_follow_the_annealed_target():
    budget = BudgetConstraint([0.5], penalty="lagrangian", dual_lr=1.0)
    budget.dual_step(0.8, 0, target=0.9)  # over the budget, but under the current target: no push
    assert budget.multipliers[0].item() == 0.0
    budget.dual_step(0.8, 0, target=0.6)
    assert budget.multipliers[0].item() == pytest.approx(0.2)
    assert budget.penalty(torch.tensor(0.8), 0, target=0.6).item() == pytest.approx(0.2 * 0.2)
    assert budget.penalty(torch.tensor(0.8), 0).item() == pytest.approx(0.2 * 0.3)  # default: against the budget
