"""``torch.compile`` of a multi-domain network with one graph for every domain.

Compiling ``model(x, domain)`` directly guards on the domain: one graph per domain, and past
``torch._dynamo.config.recompile_limit`` (8) the further domains silently run eager -- the Visual Decathlon has 10.
Here the domain is mapped to its index outside the traced region and passed in as a 0-dim integer tensor: the
switches (``scores[d]``) and the BNs (the domains' parameters stacked, then indexed; :class:`bap.blocks.
DomainBatchNorm2d`) read it as data, so the shared part -- everything but the head -- is one graph per input shape.
The heads, of different sizes per domain, run eagerly after it: one small matmul.

The compiled and the eager network are the same modules with the same parameters and buffers: training through
either updates the same state, and checkpoints, pruning and counting do not know the difference.
"""

from __future__ import annotations

from typing import Any

import torch

from bap.network import MultiDomainNetwork


class CompiledDomains:
    """``compiled(x, domain)``: ``model(x, domain)`` with :meth:`forward_features` compiled once for every domain.

    Args:
        model: the (switched or pruned) network; it keeps its own eager ``forward``.
        **compile_kwargs: passed to ``torch.compile`` (``mode``, ``backend``, ``dynamic``, ...).
    """

    def __init__(self, model: MultiDomainNetwork, **compile_kwargs: Any) -> None:
        self.model = model
        self.features = torch.compile(model.forward_features, **compile_kwargs)
        self._indices: dict[torch.device, torch.Tensor] = {}

    def domain_tensor(self, domain: str, device: torch.device) -> torch.Tensor:
        """The domain's index as a 0-dim int64 tensor on ``device`` (made once per device)."""
        if device not in self._indices:
            self._indices[device] = torch.arange(len(self.model.domains), device=device)
        return self._indices[device][self.model.domain_index(domain)]

    def __call__(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        d = self.model.domain_index(domain)
        return self.model.heads[d](self.features(x, self.domain_tensor(domain, x.device)))


def resolve_compile(setting: bool | None, device: torch.device) -> bool:
    """``compile`` of a run: as given, or by default on for CUDA and off on CPU (where compiling a run's graph
    costs more than it saves)."""
    return device.type == "cuda" if setting is None else bool(setting)
