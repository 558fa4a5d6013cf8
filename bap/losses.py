"""The budget constraint and the parameter-sharing losses on binary switches.

Notation (paper.md §2.3(c)): ``s ∈ {0,1}^{D×N}`` are the binarised switches of D domains over N switches (straight-
through gradients), ``c ∈ R^N`` each switch's cost (1, parameters or MACs, see :func:`bap.cost.switch_costs`).

- usage of domain d: ``g(s_d) = Σ_j c_j s_dj / Σ_j c_j``, to be kept ``<= β``.
- ``union``: ``Σ c_j U_j / Σ c_j`` with ``U_j = 1 − Π_d (1 − s_dj)`` (the kept fraction after pruning).
- ``intersection``: ``1 − Σ c_j A_j / Σ c_j`` with ``A_j = Π_d s_dj`` (reward filters every domain uses).
- ``jaccard``: ``1 − Σ c_j A_j / (Σ c_j U_j + ε)`` (multi-set IoU of the domains' filter sets).
- ``pairwise``: ``1 − mean_{a<b} Σ c_j s_aj s_bj / Σ c_j max(s_aj, s_bj)`` (pairwise-averaged Jaccard, paper.md
  §2.3(c)'s denser variant).
- ``consensus``: ``4 Σ c_j mean_d (s_dj − mean_d s_dj)² / Σ c_j`` (how much the domains disagree, switch by switch).

The three named formulas are **our reconstruction**: the names come from the paper (dos Santos et al., P1), the
formulas could not be checked against it (paper.md §2.3(c)); ``pairwise`` and ``consensus`` are ours.

**The default is ``union`` at weight 5** (``bench/RESULTS.md``, "Fidelity"): with every switch on -- the start of
training -- its gradient is zero, so it never fights the budget; as the budget takes switches off it pushes off the
ones a single domain still holds, which is what pruning can remove. ``intersection``, ``jaccard`` and ``pairwise``
instead push every switch *on* while all domains use it (their optimum is "everything shared"), so the budget
penalty must first outgrow them: usage stays at 1.0 for half the run, then collapses at once, and the final
enforcement cuts the rest (the "collapse" at a large Jaccard weight). ``consensus`` does not fight the budget either,
but pulls domains only toward each other, not toward a small union.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from bap.choices import BUDGET_PENALTIES, SHARING_KINDS, BudgetPenalty, SharingKind, check_budget

JACCARD_EPS = 1e-8


def usage(switches: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
    """Cost-weighted fraction of switches that are on: ``switches`` (..., N) binary, ``costs`` (N,)."""
    return (switches * costs).sum(dim=-1) / costs.sum()


def union_fraction(switches: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
    """Cost-weighted fraction of switches used by at least one domain; ``switches`` is (D, N)."""
    union = 1.0 - torch.prod(1.0 - switches, dim=0)
    return (union * costs).sum() / costs.sum()


def _pairwise_jaccard(switches: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
    """``1 − mean_{a<b} |s_a ∧ s_b| / |s_a ∨ s_b|`` (cost-weighted); 0 with a single domain."""
    domains = switches.shape[0]
    if domains < 2:
        return switches.new_zeros(())
    weighted = switches * costs
    inter = weighted @ switches.T
    sizes = weighted.sum(dim=1)
    iou = inter / (sizes[:, None] + sizes[None, :] - inter + JACCARD_EPS)
    pairs = torch.triu_indices(domains, domains, offset=1, device=switches.device)
    return 1.0 - iou[pairs[0], pairs[1]].mean()


def _consensus(switches: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
    """Cost-weighted disagreement between the domains: ``4 Σ_j c_j mean_d (s_dj − mean_d s_dj)² / Σ_j c_j``.

    0 when every domain makes the same choice for every switch (so it never fights the budget while all switches are
    on), 1 when half the domains use each switch; its gradient pulls each domain toward the others' choice, on or off.
    """
    spread = ((switches - switches.mean(dim=0, keepdim=True)) ** 2).mean(dim=0)
    return 4.0 * (spread * costs).sum() / costs.sum()


def sharing_loss(kind: SharingKind, switches: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
    """One of the parameter-sharing losses of (D, N) binary switches; 0 for ``"none"``."""
    if kind not in SHARING_KINDS:
        raise ValueError(f"sharing loss must be one of {SHARING_KINDS}, got {kind!r}")
    if kind == "none":
        return switches.new_zeros(())
    if kind == "pairwise":
        return _pairwise_jaccard(switches, costs)
    if kind == "consensus":
        return _consensus(switches, costs)
    union = 1.0 - torch.prod(1.0 - switches, dim=0)
    if kind == "union":
        return (union * costs).sum() / costs.sum()
    shared = torch.prod(switches, dim=0)
    if kind == "intersection":
        return 1.0 - (shared * costs).sum() / costs.sum()
    return 1.0 - (shared * costs).sum() / ((union * costs).sum() + JACCARD_EPS)


class BudgetConstraint(nn.Module):
    """Per-domain budget ``g(s_d) <= β_d`` as a Lagrangian with projected dual ascent, or a plain hinge.

    ``penalty`` is ``λ_d · max(0, g − β_d)`` (lagrangian) or ``weight · max(0, g − β_d)`` (hinge): zero while the
    domain is within budget, and its gradient pushes switches off when over. :meth:`dual_step` updates
    ``λ_d ← max(0, λ_d + η · (g − β_d))``, so λ grows while the budget is exceeded and decays back once it is met.

    Args:
        budgets: one budget per domain, each in (0, 1].
        penalty: ``"lagrangian"`` or ``"hinge"``.
        dual_lr: the dual step size ``η`` (lagrangian).
        initial_multiplier: starting ``λ`` of every domain (lagrangian).
        hinge_weight: the fixed weight of the hinge penalty.
    """

    def __init__(
        self,
        budgets: Sequence[float],
        *,
        penalty: BudgetPenalty = "lagrangian",
        dual_lr: float = 1e-2,
        initial_multiplier: float = 0.0,
        hinge_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if penalty not in BUDGET_PENALTIES:
            raise ValueError(f"budget penalty must be one of {BUDGET_PENALTIES}, got {penalty!r}")
        if dual_lr < 0:
            raise ValueError(f"dual_lr must be >= 0, got {dual_lr}")
        self.penalty_kind: BudgetPenalty = penalty
        self.dual_lr = float(dual_lr)
        self.hinge_weight = float(hinge_weight)
        self.register_buffer("budgets", torch.tensor([check_budget(b) for b in budgets], dtype=torch.float32))
        self.register_buffer("multipliers", torch.full((len(budgets),), float(initial_multiplier)))

    def penalty(self, usage_value: torch.Tensor, domain: int, target: torch.Tensor | float | None = None
                ) -> torch.Tensor:
        """The domain's penalty for ``usage_value`` over ``target`` (default: its budget; annealed runs pass the
        current target, see :mod:`bap.budget`)."""
        excess = torch.relu(usage_value - (self.budgets[domain] if target is None else target))
        weight = self.multipliers[domain] if self.penalty_kind == "lagrangian" else self.hinge_weight
        return weight * excess

    @torch.no_grad()
    def dual_step(self, usage_value: torch.Tensor | float, domain: int, target: float | None = None) -> None:
        if self.penalty_kind != "lagrangian":
            return
        violation = float(usage_value) - (float(self.budgets[domain]) if target is None else float(target))
        self.multipliers[domain] = max(0.0, float(self.multipliers[domain]) + self.dual_lr * violation)

    @torch.no_grad()
    def dual_steps(self, usages: torch.Tensor, targets: torch.Tensor) -> None:
        """:meth:`dual_step` for every domain at once, on the multipliers' device (no host round trip)."""
        if self.penalty_kind != "lagrangian":
            return
        violation = usages.to(self.multipliers) - targets.to(self.multipliers)
        self.multipliers.copy_((self.multipliers + self.dual_lr * violation).clamp_min(0.0))


class SharingLoss(nn.Module):
    """A weighted parameter-sharing loss, optionally with a hinge budget on the union.

    ``weight`` is fixed, or learned by uncertainty weighting (``exp(−σ)·L + σ`` with σ trained jointly and
    initialised to ``−log(weight)``), one of the parameterisations paper.md §2.3(d) lists (ours, not the paper's).

    Args:
        kind: ``none``, ``union``, ``intersection`` or ``jaccard``.
        weight: the loss weight (initial weight when learnable); >= 0.
        learnable: learn the weight.
        union_budget: if set, adds ``max(0, union − union_budget)`` so the pruned model is pushed toward it.
    """

    def __init__(
        self,
        kind: SharingKind = "jaccard",
        *,
        weight: float = 1.0,
        learnable: bool = False,
        union_budget: float | None = None,
    ) -> None:
        super().__init__()
        if kind not in SHARING_KINDS:
            raise ValueError(f"sharing loss must be one of {SHARING_KINDS}, got {kind!r}")
        if weight < 0:
            raise ValueError(f"sharing weight must be >= 0, got {weight}")
        if learnable and weight <= 0:
            raise ValueError("a learnable sharing weight needs an initial weight > 0")
        self.kind: SharingKind = kind
        self.union_budget = None if union_budget is None else check_budget(union_budget, "union_budget")
        self.learnable = learnable
        log_weight = torch.tensor(math.log(weight) if weight > 0 else 0.0)
        if learnable:
            self.neg_log_weight = nn.Parameter(-log_weight)
        else:
            self.register_buffer("fixed_weight", torch.tensor(float(weight)))

    @property
    def weight(self) -> float:
        return float(torch.exp(-self.neg_log_weight.detach())) if self.learnable else float(self.fixed_weight)

    def raw(self, switches: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
        """The unweighted loss (plus the union hinge, if any) of (D, N) switches."""
        loss = sharing_loss(self.kind, switches, costs)
        if self.union_budget is not None:
            loss = loss + torch.relu(union_fraction(switches, costs) - self.union_budget)
        return loss

    def forward(self, switches: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
        loss = self.raw(switches, costs)
        if self.learnable:
            return torch.exp(-self.neg_log_weight) * loss + self.neg_log_weight
        return self.fixed_weight * loss
