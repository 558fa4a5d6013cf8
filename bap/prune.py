"""Physical pruning: drop every kernel slice and inner filter that no domain uses (paper.md §2.4).

Per switched conv, the input channels that no domain switches on are removed from the kernel. Along a block's inner
link (:mod:`bap.blocks`: a BasicBlock's conv1 -> conv2, a Bottleneck's conv1 -> conv2 -> conv3), filter ``o`` of the
producer (with its per-domain BN entries) feeds only input channel ``o`` of the consumer, so it is dropped when the
consumer's channel ``o`` was removed. Channels on the residual stream (and the stem's, read by the first block and
its projection shortcut) are read by several consumers and are kept; only their kernel slices go. The same code
prunes every :class:`bap.network.MultiDomainNetwork`. Each domain keeps its switches over the kept channels, so the pruned network
computes exactly what the switched one did, for every domain, in eval mode.

A pruned model is saved as ``model.pt`` (state dict) plus ``architecture.json``: the network family and config and,
per layer, the kept input/output channel indices and each domain's switches over the kept inputs as a "0101" string.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bap import metrics as M
from bap.blocks import DomainBatchNorm2d
from bap.network import MultiDomainNetwork, network_from_config
from bap.switches import DomainConv, conv_output_size, pick

ARCHITECTURE_FILE = M.ARCHITECTURE_FILE
WEIGHTS_FILE = M.WEIGHTS_FILE
FORMAT_VERSION = 1


class PrunedConv2d(DomainConv):
    """A sliced shared kernel with each domain's fixed switches over the kept input channels.

    Args:
        weight: the kept kernel, ``(kept_out, kept_in, k, k)``.
        masks: ``(domains, kept_in)`` bool, each domain's switches over the kept inputs.
        in_index: indices of the kept inputs in the incoming tensor, or None when the incoming tensor already holds
            exactly the kept channels (the consumer of an inner link, fed by its pruned producer).
        stride: convolution stride.
        padding: zero padding (that of the switched conv).
    """

    def __init__(self, weight: torch.Tensor, masks: torch.Tensor, in_index: torch.Tensor | None, stride: int,
                 padding: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.register_buffer("masks", masks.bool().clone())
        self.register_buffer("in_index", None if in_index is None else in_index.long().clone())
        self.out_channels, self.in_channels, self.kernel_size, _ = weight.shape
        self.stride = stride
        self.padding = padding

    def in_masks(self) -> torch.Tensor:
        return self.masks.cpu()

    def forward(self, x: torch.Tensor, domain: int | torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0 or self.out_channels == 0:
            height = conv_output_size(x.shape[-2], self.kernel_size, self.stride, self.padding)
            width = conv_output_size(x.shape[-1], self.kernel_size, self.stride, self.padding)
            return x.new_zeros(x.shape[0], self.out_channels, height, width)
        if self.in_index is not None:
            x = x.index_select(1, self.in_index)
        weight = self.weight * pick(self.masks, domain).to(self.weight.dtype).view(1, -1, 1, 1)
        return F.conv2d(x, weight, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"


def _slice_norm(norm: DomainBatchNorm2d, keep: torch.Tensor) -> DomainBatchNorm2d:
    sliced = DomainBatchNorm2d(int(keep.numel()), len(norm.bns))
    for new, old in zip(sliced.bns, norm.bns, strict=True):
        new.eps, new.momentum = old.eps, old.momentum
        state = old.state_dict()
        new.load_state_dict({k: (v[keep] if v.dim() == 1 else v) for k, v in state.items()})
    return sliced.to(norm.bns[0].running_mean.device)


def _kept(masks: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(masks.any(dim=0), as_tuple=False).flatten()


def pruning_plan(model: MultiDomainNetwork) -> dict[str, dict[str, Any]]:
    """Per conv: kept input indices, kept output indices (None = all) and masks over kept inputs."""
    masks = {name: conv.in_masks() for name, conv in model.switched_convs()}
    consumer_of = {link.producer: link.consumer for link in model.channel_links()}
    plan: dict[str, dict[str, Any]] = {}
    for name, conv in model.switched_convs():
        keep_in = _kept(masks[name])
        consumer = consumer_of.get(name)
        plan[name] = {
            "in_channels": conv.in_channels,
            "out_channels": conv.out_channels,
            "kept_inputs": keep_in,
            "kept_outputs": _kept(masks[consumer]) if consumer is not None else None,
            "masks": masks[name][:, keep_in],
        }
    return plan


def _apply_plan(model: MultiDomainNetwork, plan: dict[str, dict[str, Any]]) -> MultiDomainNetwork:
    """Replace every conv of ``model`` (and each inner link's BN) in place by its pruned form."""
    modules = dict(model.named_modules())
    links = model.channel_links()
    fed_by_pruned_producer = {link.consumer for link in links}
    norm_of = {link.producer: link.norm for link in links}
    for name, conv in list(model.switched_convs()):
        layer = plan[name]
        weight = conv.weight.detach()
        if layer["kept_outputs"] is not None:
            weight = weight[layer["kept_outputs"].to(weight.device)]
        weight = weight[:, layer["kept_inputs"].to(weight.device)]
        # no gather where the incoming tensor already is the kept channels: an inner link's consumer, or a conv
        # that keeps every input (a full copy of the activations otherwise, measured in bench/pruned_latency.py)
        keeps_all = len(layer["kept_inputs"]) == layer["in_channels"]
        in_index = None if name in fed_by_pruned_producer or keeps_all else layer["kept_inputs"]
        pruned = PrunedConv2d(weight, layer["masks"], in_index, conv.stride, conv.padding).to(weight.device)
        _replace(model, modules, name, pruned)
        if layer["kept_outputs"] is not None:
            norm = modules[norm_of[name]]
            assert isinstance(norm, DomainBatchNorm2d)
            _replace(model, modules, norm_of[name], _slice_norm(norm, layer["kept_outputs"]))
    model.pruned = True
    model.pruning_maps = plan
    return model


def _replace(model: nn.Module, modules: dict[str, nn.Module], name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(modules[parent_name] if parent_name else model, attr, new)


def round_plan(plan: dict[str, dict[str, Any]], model: MultiDomainNetwork, multiple: int) -> None:
    """Pad, in place, each conv's kept inputs up to a multiple of ``multiple`` (capped at the conv's width) with
    channels every domain has off -- their masks are all False, so the outputs do not change -- and make each inner
    link's producer keep the filters its consumer's padded inputs read (with their BN entries)."""
    masks = {name: conv.in_masks() for name, conv in model.switched_convs()}
    for name, layer in plan.items():
        kept = layer["kept_inputs"]
        width = layer["in_channels"]
        want = min(width, math.ceil(kept.numel() / multiple) * multiple) if kept.numel() else 0
        if want > kept.numel():
            unused = torch.ones(width, dtype=torch.bool)
            unused[kept] = False
            padding = torch.nonzero(unused, as_tuple=False).flatten()[: want - kept.numel()]
            kept = torch.sort(torch.cat([kept, padding])).values
        layer["kept_inputs"] = kept
        layer["masks"] = masks[name][:, kept]
    for link in model.channel_links():
        plan[link.producer]["kept_outputs"] = plan[link.consumer]["kept_inputs"]


def prune(model: MultiDomainNetwork, *, channel_multiple: int | None = None) -> MultiDomainNetwork:
    """A smaller copy of ``model`` without the channels no domain uses; same outputs for every domain in eval mode.

    Called the same way, ``pruned(x, domain)``; :func:`bap.count_cost` on it equals the union cost of ``model``.

    ``channel_multiple``: keep each conv's input channels (and an inner link's filters) in multiples of this
    (e.g. 8), padding with channels no domain uses (switched off, so the outputs are the same): more parameters
    than the union cost, for CPU kernels that may run round channel counts faster -- measured in
    ``bench/pruned_latency.py`` (``bench/RESULTS.md``): with multiples of 8 the eager pruned model took 0.61-0.89x
    the time at batch 1 and about the same at batch 64. :func:`bap.export_domain` drops the padding again (its
    files count exactly ``count_cost``).
    """
    if model.pruned:
        raise ValueError("model is already pruned")
    if channel_multiple is not None and (not isinstance(channel_multiple, int) or channel_multiple < 1):
        raise ValueError(f"channel_multiple must be a positive integer (e.g. 8) or None, got {channel_multiple!r}")
    plan = pruning_plan(model)
    if channel_multiple is not None and channel_multiple > 1:
        round_plan(plan, model, channel_multiple)
    return _apply_plan(copy.deepcopy(model), plan)


def _bits(mask: torch.Tensor) -> str:
    return "".join("1" if bit else "0" for bit in mask.tolist())


def save_pruned(model: MultiDomainNetwork, directory: str | Path) -> Path:
    """Write ``model.pt`` (state dict) and ``architecture.json`` (config + per-layer channel maps)."""
    if not model.pruned:
        raise ValueError("save_pruned expects a pruned model: call bap.prune(model) first")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    layers = {}
    for name, conv in model.switched_convs():
        layer = model.pruning_maps[name]
        layers[name] = {
            "in_channels": layer["in_channels"],
            "out_channels": layer["out_channels"],
            "kept_inputs": layer["kept_inputs"].tolist(),
            "kept_outputs": None if layer["kept_outputs"] is None else layer["kept_outputs"].tolist(),
            "switches": {domain: _bits(conv.masks[d]) for d, domain in enumerate(model.domains)},
        }
    architecture = {"format_version": FORMAT_VERSION, "family": model.family, "config": model.config,
                    "layers": layers}
    (directory / ARCHITECTURE_FILE).write_text(json.dumps(architecture, indent=1))
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, directory / WEIGHTS_FILE)
    return directory


def load_pruned(directory: str | Path, map_location: str | torch.device = "cpu") -> MultiDomainNetwork:
    """Rebuild a pruned model from :func:`save_pruned`'s files."""
    directory = Path(directory)
    for file in (ARCHITECTURE_FILE, WEIGHTS_FILE):
        if not (directory / file).is_file():
            raise FileNotFoundError(f"{str(directory / file)!r} is missing: not a saved pruned model")
    architecture = json.loads((directory / ARCHITECTURE_FILE).read_text())
    # files written before there were several families hold a ResNet-26
    model = network_from_config(architecture["config"], architecture.get("family", "resnet26"))
    plan = {}
    for name, layer in architecture["layers"].items():
        masks = torch.tensor([[bit == "1" for bit in layer["switches"][domain]] for domain in model.domains])
        plan[name] = {
            "in_channels": layer["in_channels"],
            "out_channels": layer["out_channels"],
            "kept_inputs": torch.tensor(layer["kept_inputs"], dtype=torch.long),
            "kept_outputs": None if layer["kept_outputs"] is None else torch.tensor(layer["kept_outputs"],
                                                                                     dtype=torch.long),
            "masks": masks.reshape(len(model.domains), len(layer["kept_inputs"])),
        }
    model = _apply_plan(model, plan)
    state = torch.load(directory / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    # files from before convs that keep every input stopped gathering them hold that (identity) index: not needed
    state = {k: v for k, v in state.items() if not (k.endswith(".in_index") and k not in model.state_dict())}
    model.load_state_dict(state)
    return model.to(map_location)
