"""The allowed values of the library's string options, and the budget check.

Torch-free on purpose: ``TrainConfig`` validates with these, and the sweep driver validates every configuration
before anything starts without importing torch.
"""

from __future__ import annotations

from typing import Literal

CostKind = Literal["switches", "params", "macs"]
COST_KINDS: tuple[str, ...] = ("switches", "params", "macs")
BudgetPenalty = Literal["lagrangian", "hinge"]
BUDGET_PENALTIES: tuple[str, ...] = ("lagrangian", "hinge")
SharingKind = Literal["none", "union", "intersection", "jaccard", "pairwise", "consensus"]
SHARING_KINDS: tuple[str, ...] = ("none", "union", "intersection", "jaccard", "pairwise", "consensus")
# "resnet26": the Decathlon ResNet-26 (bap.model); the others: torchvision's ResNets (bap.resnet)
ARCHS: tuple[str, ...] = ("resnet26", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
SwitchForm = Literal["auto", "activation", "kernel"]
SWITCH_FORMS: tuple[str, ...] = ("auto", "activation", "kernel")


def check_budget(budget: float, field: str = "budget") -> float:
    """``budget`` as a float in (0, 1], or a ValueError naming ``field``."""
    value = float(budget)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{field} must be in (0, 1] (the kept share of the backbone), got {budget}")
    return value
