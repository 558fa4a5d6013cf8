"""The one line that says what a sweep shows: the pruned network at one budget against the full one.

Used by the driver's end-of-sweep summary and by the report, e.g.::

    budget 0.5: 5 domains in 0.58x the parameters and 0.78x the MACs (FLOPs) of one single-domain network,
    mean accuracy 0.949 vs 0.968 at budget 1.0

The budget shown is 0.5 when the sweep has it, else the one nearest to it below 1; the comparison is the best trial at
budget 1.0 (every switch allowed on), when the sweep has one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BudgetBest", "headline"]

SHOWN_BUDGET = 0.5
BUDGET_UNITS = {"params": "parameters", "macs": "MACs", "switches": "switches"}


@dataclass(frozen=True)
class BudgetBest:
    """The best trial of one budget: its mean val accuracy and union cost ratios (x one single-domain network)."""

    budget: float
    mean_acc: float
    params_ratio: float
    macs_ratio: float

    @property
    def complete(self) -> bool:
        return all(math.isfinite(v) for v in (self.budget, self.mean_acc, self.params_ratio, self.macs_ratio))


def _shown(best: Sequence[BudgetBest]) -> BudgetBest | None:
    below = [b for b in best if b.budget < 1.0 or math.isclose(b.budget, SHOWN_BUDGET)]
    return min(below, key=lambda b: (abs(b.budget - SHOWN_BUDGET), b.budget), default=None)


def headline(best: Sequence[BudgetBest], domains: int, budget_unit: str | None = None) -> str | None:
    """The line (module docstring), or None when no budget below 1 has a complete best trial.

    Args:
        best: the best trial per budget.
        domains: how many domains the network serves.
        budget_unit: what the budget bounds (``params``, ``macs``, ``switches``), if known.
    """
    complete = [b for b in best if b.complete]
    shown = _shown(complete)
    if shown is None:
        return None
    full = next((b for b in complete if math.isclose(b.budget, 1.0)), None)
    unit = f" ({BUDGET_UNITS.get(budget_unit, budget_unit)})" if budget_unit else ""
    line = (f"budget {shown.budget:g}{unit}: {domains} domain{'s' if domains != 1 else ''} in "
            f"{shown.params_ratio:.2f}x the parameters and {shown.macs_ratio:.2f}x the MACs (FLOPs) of one "
            f"single-domain network, mean accuracy {shown.mean_acc:.3f}")
    return line + (f" vs {full.mean_acc:.3f} at budget 1.0" if full is not None and full is not shown else "")
