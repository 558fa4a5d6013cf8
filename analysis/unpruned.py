"""Size of the unpruned multi-domain network, the second landmark of the Pareto plots (the first is ratio 1.0).

Ratios in the trial table are in units of *one single-domain ResNet-26 with its head*. The unpruned multi-domain
model -- every switch on -- shares that backbone but carries every domain's BNs and head, so its union params
ratio is above 1 (e.g. 1.017 for five Decathlon domains at width 1, far more for the tiny smoke models whose heads
weigh more than their convolutions). Its union MACs ratio is exactly 1: one image goes through the same
convolutions and the largest head. For one domain its params and MACs ratios are exactly 1 as well: that domain's
path through the unpruned model *is* the single-domain network.

No metric records the unpruned size, so it is counted here from a finished trial's saved architecture
(``pruned/architecture.json``: the model config with every domain's number of classes) and input size
(``metrics.json``), with ``bap.cost`` on a model whose switches are all on -- the same counting code as training,
so the numbers agree with the table's ``reference_params``. This needs torch; without it, or without a saved
architecture, the report marks only the single-domain baseline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelCosts", "architecture_from_files", "model_costs"]

ARCHITECTURE_PATH = "pruned/architecture.json"  # where bap.train saves the pruned model's architecture
METRICS_INPUT_SIZE = "input_size"  # metrics.json key: the (C, H, W) the costs were counted at


@dataclass(frozen=True)
class ModelCosts:
    """Costs of the sweep's architecture (params, MACs per image).

    Attributes:
        reference_params: One single-domain ResNet-26 with the largest head (the unit of the union ratios).
        reference_macs: Its MACs.
        unpruned_params: The multi-domain model with every switch on: all domains' BNs and heads.
        unpruned_macs: Its MACs for one image (largest head).
    """

    reference_params: int
    reference_macs: int
    unpruned_params: int
    unpruned_macs: int

    @property
    def unpruned_params_ratio(self) -> float:
        return self.unpruned_params / self.reference_params

    @property
    def unpruned_macs_ratio(self) -> float:
        return self.unpruned_macs / self.reference_macs


def architecture_from_files(architecture_json: str | Path, metrics_json: str | Path) -> tuple[dict, list[int]]:
    """``(model config, input size)`` from a trial's ``pruned/architecture.json`` and ``metrics.json``."""
    config = json.loads(Path(architecture_json).read_text())["config"]
    input_size = json.loads(Path(metrics_json).read_text())[METRICS_INPUT_SIZE]
    return dict(config), [int(v) for v in input_size]


def model_costs(config: Mapping[str, Any], input_size: Sequence[int]) -> ModelCosts:
    """Count the reference and the unpruned multi-domain model of ``config`` (a ``MultiDomainResNet26.config``).

    Args:
        config: Model configuration as saved in ``architecture.json`` (``num_classes`` per domain, ``width``, ...).
        input_size: ``(C, H, W)`` the costs are counted at.

    Returns:
        The costs.
    """
    import torch

    from bap.cost import count_cost, reference_cost
    from bap.model import MultiDomainResNet26

    size = tuple(int(v) for v in input_size)
    model = MultiDomainResNet26(**config)
    for domain in model.domains:
        model.set_switch_state(domain, {name: torch.ones_like(m) for name, m in model.switch_state(domain).items()})
    reference = reference_cost(model, None, size)  # type: ignore[arg-type]
    unpruned = count_cost(model, None, size)  # type: ignore[arg-type]
    return ModelCosts(reference.params, reference.macs, unpruned.params, unpruned.macs)
