"""Budget-aware pruning of multi-domain networks: model, switches, costs, losses, pruning and the Decathlon score.

The names below (and the submodules, as attributes) load on first use (PEP 562), so a process that only needs
``bap.metrics`` -- the analysis, the sweep's MLflow and Optuna code -- does not pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from bap._lazy import lazy_exports

_EXPORTS = {
    "CompiledDomains": "bap.compiled", "Cost": "bap.cost", "count_cost": "bap.cost", "count_layer_costs": "bap.cost", "reference_cost": "bap.cost",
    "switch_costs": "bap.cost",
    "BudgetConstraint": "bap.losses", "SharingLoss": "bap.losses", "sharing_loss": "bap.losses",
    "union_fraction": "bap.losses", "usage": "bap.losses",
    "export_domain": "bap.export", "single_domain_module": "bap.export", "measure_latency": "bap.latency",
    "MultiDomainResNet26": "bap.model", "MultiDomainNetwork": "bap.network",
    "MultiDomainResNet": "bap.resnet", "from_torchvision": "bap.resnet",
    "load_pruned": "bap.prune", "prune": "bap.prune", "save_pruned": "bap.prune",
    "DECATHLON_BASELINE_ERRORS": "bap.score", "decathlon_score": "bap.score",
    "SwitchedConv2d": "bap.switches", "binarize": "bap.switches",
}

__all__ = [
    "BudgetConstraint",
    "CompiledDomains",
    "Cost",
    "DECATHLON_BASELINE_ERRORS",
    "MultiDomainNetwork",
    "MultiDomainResNet",
    "MultiDomainResNet26",
    "SharingLoss",
    "SwitchedConv2d",
    "binarize",
    "count_cost",
    "count_layer_costs",
    "decathlon_score",
    "export_domain",
    "from_torchvision",
    "load_pruned",
    "measure_latency",
    "prune",
    "reference_cost",
    "save_pruned",
    "sharing_loss",
    "single_domain_module",
    "switch_costs",
    "union_fraction",
    "usage",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


class _Package(types.ModuleType):
    """``bap.prune`` is the function, as it was when this file imported everything: importing the submodule
    ``bap.prune`` later would otherwise rebind the package attribute to the module. Other values (a test's
    monkeypatch) are kept until deleted."""

    @property
    def prune(self) -> Any:
        override = self.__dict__.get("_prune_override")
        return override if override is not None else importlib.import_module("bap.prune").prune

    @prune.setter
    def prune(self, value: Any) -> None:
        if not (isinstance(value, types.ModuleType) and value.__name__ == "bap.prune"):
            self.__dict__["_prune_override"] = value

    @prune.deleter
    def prune(self) -> None:
        self.__dict__.pop("_prune_override", None)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:
    from bap.compiled import CompiledDomains
    from bap.cost import Cost, count_cost, count_layer_costs, reference_cost, switch_costs
    from bap.export import export_domain, single_domain_module
    from bap.latency import measure_latency
    from bap.losses import BudgetConstraint, SharingLoss, sharing_loss, union_fraction, usage
    from bap.model import MultiDomainResNet26
    from bap.network import MultiDomainNetwork
    from bap.prune import load_pruned, prune, save_pruned
    from bap.resnet import MultiDomainResNet, from_torchvision
    from bap.score import DECATHLON_BASELINE_ERRORS, decathlon_score
    from bap.switches import SwitchedConv2d, binarize
