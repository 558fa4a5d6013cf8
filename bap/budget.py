"""How a run reaches its budget by training: the annealed target, the one final enforcement, the recovery phase.

A run of ``N`` optimizer steps is laid out as (fractions of ``N`` from :class:`bap.config.TrainConfig`)::

    0 ........ anneal ..................... N - recovery ........ N
    target 1.0 -> budget    target = budget    | enforce; switches frozen, BNs and heads recover

* **Annealing** (``budget_anneal``): each domain's target usage falls linearly from 1.0 (every switch on) to its
  budget over the first part of the schedule, so the budget penalty takes switches off gradually while the
  network adapts, instead of pushing half of them off at once.
* **Enforcement**: at the start of the recovery phase (or after the last step, without one) any domain still over
  its budget has its lowest-valued ON switches turned off until it is within it (:func:`enforce_budget`); after
  annealing this is a formality, and the count is reported (``enforced_switches_off``).
* **Recovery** (``recovery``): the last steps train only BNs and heads, switches frozen, so the network recovers
  from whatever the enforcement cut.

:func:`feasible_switches` is the same enforcement applied to a copy of the switch scores, for evaluating during
training the network the run would deliver now (``feasible_*`` metrics, what early stopping and the search rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bap.losses import usage


@dataclass(frozen=True)
class BudgetSchedule:
    """Where a run of ``total_steps`` optimizer steps anneals, enforces and recovers (module docstring).

    Attributes:
        total_steps: optimizer steps of the whole run.
        anneal_steps: steps over which the target falls from 1.0 to the budget (0: the budget from the start).
        enforce_step: the global step before which the budget is enforced and the switches freeze
            (``total_steps``: after the last step, no recovery phase).
    """

    total_steps: int
    anneal_steps: int
    enforce_step: int

    @classmethod
    def of(cls, total_steps: int, anneal: float, recovery: float) -> BudgetSchedule:
        recovery_steps = min(total_steps - 1, math.ceil(recovery * total_steps)) if recovery > 0 else 0
        enforce = total_steps - max(0, recovery_steps)
        return cls(total_steps, min(enforce, round(anneal * total_steps)), enforce)

    def progress(self, step: int) -> float:
        """How far the target has moved from 1.0 to the budget at global ``step``, in [0, 1]."""
        return 1.0 if self.anneal_steps <= 0 else min(1.0, step / self.anneal_steps)

    def targets(self, budgets: torch.Tensor, step: int) -> torch.Tensor:
        """Each domain's target usage at global ``step``: ``1 - (1 - budget) * progress``."""
        return 1.0 - (1.0 - budgets) * self.progress(step)

    def frozen(self, step: int) -> bool:
        """True in the recovery phase: the budget is enforced and the switches no longer train."""
        return step >= self.enforce_step


def _scores(convs: list) -> torch.Tensor:
    return torch.cat([conv.scores.detach().cpu() for conv in convs], dim=1).double()


@torch.no_grad()
def enforce_budget(model: torch.nn.Module, budgets: torch.Tensor, costs: torch.Tensor) -> dict[str, int]:
    """Turn off each over-budget domain's lowest-valued ON switches (cheapest scores first, counting each switch's
    cost) until its usage is <= its budget. Returns the number of switches turned off per domain."""
    convs = [conv for _, conv in model.switched_convs()]
    sizes = [conv.in_channels for conv in convs]
    threshold = convs[0].threshold
    costs = costs.cpu().double()
    scores = _scores(convs)
    switched_off = {}
    for d, domain in enumerate(model.domains):
        on = scores[d] > threshold
        excess = float((costs * on).sum() / costs.sum()) - float(budgets[d])
        count = 0
        if excess > 0:
            order = torch.argsort(torch.where(on, scores[d], torch.inf))[: int(on.sum())]
            removed = torch.cumsum(costs[order], 0) / costs.sum()
            count = min(int(torch.searchsorted(removed, torch.tensor([excess], dtype=removed.dtype)).item()) + 1,
                        len(order))
            off = torch.zeros_like(on)
            off[order[:count]] = True
            for conv, chunk in zip(convs, torch.split(off, sizes), strict=True):
                chunk = chunk.to(conv.scores.device)
                conv.scores[d] = torch.where(chunk, torch.full_like(conv.scores[d], threshold - 1e-3),
                                             conv.scores[d])
        switched_off[domain] = count
    return switched_off


@torch.no_grad()
def within_budget(model: torch.nn.Module, budgets: torch.Tensor, costs: torch.Tensor, tolerance: float = 1e-9
                  ) -> bool:
    """True if every domain's usage is at most its budget (then enforcing would change nothing)."""
    convs = [conv for _, conv in model.switched_convs()]
    on = (_scores(convs) > convs[0].threshold).double()
    return bool((usage(on, costs.cpu().double()) <= budgets.cpu().double() + tolerance).all())


class feasible_switches:
    """Context manager: inside, the model's switches are the budget-enforced ones (and its BN statistics may be
    changed freely); on exit both are put back exactly as they were."""

    def __init__(self, model: torch.nn.Module, budgets: torch.Tensor, costs: torch.Tensor) -> None:
        self.model, self.budgets, self.costs = model, budgets, costs

    def __enter__(self) -> dict[str, int]:
        self.scores = [conv.scores.detach().clone() for _, conv in self.model.switched_convs()]
        self.norms = {name: {k: v.clone() for k, v in m.state_dict().items()}
                      for name, m in self.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
        return enforce_budget(self.model, self.budgets, self.costs)

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for (_, conv), saved in zip(self.model.switched_convs(), self.scores, strict=True):
                conv.scores.copy_(saved)
            modules = dict(self.model.named_modules())
            for name, state in self.norms.items():
                modules[name].load_state_dict(state)
