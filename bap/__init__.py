"""Budget-aware pruning of multi-domain networks: model, switches, costs, losses, pruning and the Decathlon score."""

from bap.cost import Cost, count_cost, count_layer_costs, reference_cost, switch_costs
from bap.losses import BudgetConstraint, SharingLoss, sharing_loss, union_fraction, usage
from bap.model import MultiDomainResNet26
from bap.prune import load_pruned, prune, save_pruned
from bap.score import DECATHLON_BASELINE_ERRORS, decathlon_score
from bap.switches import SwitchedConv2d, binarize

__all__ = [
    "DECATHLON_BASELINE_ERRORS",
    "BudgetConstraint",
    "Cost",
    "MultiDomainResNet26",
    "SharingLoss",
    "SwitchedConv2d",
    "binarize",
    "count_cost",
    "count_layer_costs",
    "decathlon_score",
    "load_pruned",
    "prune",
    "reference_cost",
    "save_pruned",
    "sharing_loss",
    "switch_costs",
    "union_fraction",
    "usage",
]
