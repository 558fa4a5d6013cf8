"""Exact parameter and MAC counts of a multi-domain network for a given switch state.

MACs are multiply-accumulates (1 MAC = 2 FLOPs) of the convolutions and the linear head, per image; BN, ReLU,
pooling and the parameter-free shortcuts are not counted (as in the multi-domain literature).

A switch turns off one input-channel slice of a kernel. Along a block's inner link (:mod:`bap.blocks`), output
filter ``o`` of the producer feeds only input channel ``o`` of the consumer, so a filter is live for a domain only
where that domain's consumer switch ``o`` is on (paper.md §2.4). Counting works the same on the switched and on the
pruned model (whose layers expose the same ``in_masks()`` over their kept channels), so the two agree -- and the
same for every architecture (:class:`bap.network.MultiDomainNetwork`: ResNet-26, any torchvision ResNet).

- ``domain=name``: what that domain uses (its live weights, its BNs and head).
- ``domain=None``: the union over domains = what pruning keeps: the parameters of the pruned network with every
  domain's BNs and heads, and the MACs of one image through it for the domain with the largest head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bap.choices import COST_KINDS, CostKind
from bap.network import MultiDomainNetwork

DEFAULT_INPUT_SIZE = (3, 64, 64)


@dataclass(frozen=True)
class Cost:
    """Parameters and MACs (multiply-accumulates per image; 1 MAC = 2 FLOPs)."""

    params: int
    macs: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.macs + other.macs)

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class ConvLayer:
    """One switched conv with what counting needs: its masks, the masks that decide its live outputs, its size."""

    name: str
    module: nn.Module
    in_masks: torch.Tensor  # (domains, in_channels) bool
    out_masks: torch.Tensor | None  # (domains, out_channels) bool for an inner link's producer, None = all live
    out_height: int
    out_width: int

    @property
    def kernel_area(self) -> int:
        return self.module.kernel_size**2


def conv_layers(model: MultiDomainNetwork, input_size: tuple[int, int, int] = DEFAULT_INPUT_SIZE) -> list[ConvLayer]:
    """Every conv of ``model`` in forward order, with its output size for ``input_size`` (C, H, W)."""
    sizes = model.conv_output_sizes(input_size)
    convs = dict(model.switched_convs())
    consumers = {link.producer: convs[link.consumer] for link in model.channel_links()}
    layers = []
    for name, conv in convs.items():
        consumer = consumers.get(name)
        out_masks = consumer.in_masks() if consumer is not None else None
        layers.append(ConvLayer(name, conv, conv.in_masks(), out_masks, *sizes[name]))
    return layers


def _live(masks: torch.Tensor | None, domain: int | None, total: int) -> int:
    if masks is None:
        return total
    if domain is None:
        return int(masks.any(dim=0).sum())
    return int(masks[domain].sum())


def _bn_params(model: MultiDomainNetwork, domain: int, live_channels: dict[str, int]) -> int:
    """Affine parameters of one domain's BNs; an inner link's BN counts only its live channels."""
    total = 0
    for name, module in model.norms():
        channels = live_channels.get(name, module.num_features)
        total += 2 * channels if module.bns[domain].affine else 0
    return total


def _head(model: MultiDomainNetwork, domain: int) -> Cost:
    head = model.heads[domain]
    return Cost(sum(p.numel() for p in head.parameters()), head.in_features * head.out_features)


def count_layer_costs(
    model: MultiDomainNetwork,
    domain: str | None = None,
    input_size: tuple[int, int, int] = DEFAULT_INPUT_SIZE,
) -> dict[str, Cost]:
    """Per-layer costs: one entry per switched conv, plus ``"norms"`` (BN affine) and ``"head"`` (linear).

    For ``domain=None`` (the union), ``"norms"`` and ``"head"`` hold every domain's parameters, and the head's MACs
    are those of the largest head.
    """
    domains = range(len(model.domains)) if domain is None else [model.domain_index(domain)]
    d = None if domain is None else domains[0]
    costs: dict[str, Cost] = {}
    norm_of = {link.producer: link.norm for link in model.channel_links()}
    live_norms: dict[str, int] = {}
    for layer in conv_layers(model, input_size):
        live_in = _live(layer.in_masks, d, layer.module.in_channels)
        live_out = _live(layer.out_masks, d, layer.module.out_channels)
        params = live_out * live_in * layer.kernel_area
        costs[layer.name] = Cost(params, params * layer.out_height * layer.out_width)
        if layer.out_masks is not None:
            live_norms[norm_of[layer.name]] = live_out
    # For the union, a domain's linked BN keeps the channels that any domain uses (the pruned network's width).
    norms = sum(_bn_params(model, i, live_norms) for i in domains)
    heads = [_head(model, i) for i in domains]
    costs["norms"] = Cost(norms, 0)
    costs["head"] = Cost(sum(h.params for h in heads), max(h.macs for h in heads))
    return costs


def count_cost(
    model: MultiDomainNetwork,
    domain: str | None = None,
    input_size: tuple[int, int, int] = DEFAULT_INPUT_SIZE,
) -> Cost:
    """Exact parameters and MACs of ``domain`` (or of the union of all domains, i.e. the pruned network).

    Works on the switched and on the pruned model alike, and both give the same numbers.
    """
    total = Cost(0, 0)
    for cost in count_layer_costs(model, domain, input_size).values():
        total = total + cost
    return total


def _template(model: MultiDomainNetwork) -> MultiDomainNetwork:
    """The unpruned architecture of ``model``: itself, or for a pruned model a weightless template of it."""
    return model.template() if model.pruned else model


def _dense_convs(model: MultiDomainNetwork, input_size: tuple[int, int, int]) -> Cost:
    """Every conv with every channel on, for one image of ``input_size``."""
    sizes = model.conv_output_sizes(input_size)
    total = Cost(0, 0)
    for name, conv in model.switched_convs():
        height, width = sizes[name]
        params = conv.weight[0].numel() * conv.out_channels
        total = total + Cost(params, params * height * width)
    return total


def reference_cost(
    model: MultiDomainNetwork, domain: str | None = None, input_size: tuple[int, int, int] = DEFAULT_INPUT_SIZE
) -> Cost:
    """One single-domain network of the same architecture with every channel on, with its BNs and head.

    ``domain=None`` takes the domain with the largest head: the reference of the union ratios.
    """
    model = _template(model)
    domains = [model.domain_index(domain)] if domain is not None else range(len(model.domains))
    norms = sum(2 * module.num_features for _, module in model.norms())
    head = max((_head(model, i) for i in domains), key=lambda c: (c.params, c.macs))
    return _dense_convs(model, input_size) + Cost(norms, 0) + head


def unpruned_cost(model: MultiDomainNetwork, input_size: tuple[int, int, int] = DEFAULT_INPUT_SIZE) -> Cost:
    """The multi-domain network with every switch on: every conv in full, every domain's BNs and heads; the MACs of
    one image through it with the largest head. Its MACs equal the reference's; its params are above them."""
    model = _template(model)
    norms = len(model.domains) * sum(2 * module.num_features for _, module in model.norms())
    heads = [_head(model, i) for i in range(len(model.domains))]
    return _dense_convs(model, input_size) + Cost(norms + sum(h.params for h in heads), max(h.macs for h in heads))


def switch_costs(
    model: MultiDomainNetwork, kind: CostKind, input_size: tuple[int, int, int] = DEFAULT_INPUT_SIZE
) -> list[torch.Tensor]:
    """Cost of each switch, one float vector per switched conv (forward order), in the unit of ``kind``.

    ``switches``: 1 per switch; ``params``: the weights of the kernel slice it gates (out x k x k); ``macs``: the
    MACs of that slice (out x k x k x H_out x W_out). A cost-weighted budget then bounds the kept fraction of
    parameters or MACs (paper.md §2.2).
    """
    if kind not in COST_KINDS:
        raise ValueError(f"cost kind must be one of {COST_KINDS}, got {kind!r}")
    costs = []
    for layer in conv_layers(model, input_size):
        conv = layer.module
        per_switch = 1.0
        if kind in ("params", "macs"):
            per_switch = float(conv.out_channels * layer.kernel_area)
        if kind == "macs":
            per_switch *= layer.out_height * layer.out_width
        costs.append(torch.full((conv.in_channels,), per_switch))
    return costs
