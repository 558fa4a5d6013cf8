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
