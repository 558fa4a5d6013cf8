"""What every multi-domain network here shares: domains, switch states, inner links and layer sizes.

A network is shared convolutions (:class:`bap.switches.DomainConv`, switched or pruned), per-domain BNs and one
linear head per domain (``heads``), called as ``model(x, domain)``. Switch states, costs (:mod:`bap.cost`) and
pruning (:mod:`bap.prune`) work on this contract only, so they exist once for every architecture:

- :meth:`MultiDomainNetwork.switched_convs`: every conv, found by type, in registration (= forward) order;
- :meth:`MultiDomainNetwork.channel_links`: the inner links of its blocks (:mod:`bap.blocks`);
- :meth:`MultiDomainNetwork.conv_output_sizes`: each conv's output height and width for an input size, from one
  pass of a weightless (meta-device) copy, so no architecture re-derives its strides and paddings by hand.

Subclasses register under an architecture family name, so a saved pruned model is rebuilt from its config.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bap.blocks import DomainBatchNorm2d
from bap.switches import DomainConv, SwitchedConv2d

_FAMILIES: dict[str, type[MultiDomainNetwork]] = {}


@dataclass(frozen=True)
class ChannelLink:
    """A conv whose output channels feed, through ``norm``, only ``consumer`` (full module names)."""

    producer: str
    norm: str
    consumer: str


def check_num_classes(num_classes: Mapping[str, int]) -> dict[str, int]:
    """``{domain: classes}`` as plain str/int, or ValueError naming the bad entry."""
    if not num_classes:
        raise ValueError("num_classes must name at least one domain, e.g. {'svhn': 10}")
    for name, classes in num_classes.items():
        if int(classes) < 1:
            raise ValueError(f"num_classes[{name!r}] must be >= 1, got {classes}")
    return {str(k): int(v) for k, v in num_classes.items()}


class MultiDomainNetwork(nn.Module):
    """Base of the multi-domain networks: set ``config`` (with ``num_classes``), ``heads`` and the layers in
    ``__init__`` after calling :meth:`_init_domains`; implement ``forward_features(x, d)``, everything but the head
    for domain index ``d`` (an int, or a 0-dim integer tensor: see :mod:`bap.compiled`)."""

    family: ClassVar[str] = ""
    config: dict[str, Any]
    heads: nn.ModuleList

    def __init_subclass__(cls, family: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if family:
            cls.family = family
            _FAMILIES[family] = cls

    def _init_domains(self, num_classes: Mapping[str, int]) -> dict[str, int]:
        classes = check_num_classes(num_classes)
        self.domains: tuple[str, ...] = tuple(classes)
        self._domain_index = {name: i for i, name in enumerate(self.domains)}
        self.pruned = False
        self._sizes: dict[tuple[int, int, int], dict[str, tuple[int, int]]] = {}
        return classes

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MultiDomainNetwork:
        return cls(**config)

    # -- domains ---------------------------------------------------------------------------------------------
    def domain_index(self, domain: str) -> int:
        """Position of ``domain``; KeyError naming the allowed domains otherwise."""
        try:
            return self._domain_index[domain]
        except KeyError:
            raise KeyError(f"unknown domain {domain!r}; this model has domains {list(self.domains)}") from None

    def forward(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """Logits of ``x`` for ``domain`` (one of :attr:`domains`)."""
        d = self.domain_index(domain)
        return self.heads[d](self.forward_features(x, d))

    def forward_features(self, x: torch.Tensor, d: int | torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- structure -------------------------------------------------------------------------------------------
    def switched_convs(self) -> Iterator[tuple[str, DomainConv]]:
        """Every shared conv (switched, or pruned) in forward order, keyed by its module name."""
        for name, module in self.named_modules():
            if isinstance(module, DomainConv):
                yield name, module

    def channel_links(self) -> list[ChannelLink]:
        """Every block's inner links, with full module names."""
        links = []
        for name, module in self.named_modules():
            for producer, norm, consumer in getattr(module, "INNER_LINKS", ()):
                links.append(ChannelLink(f"{name}.{producer}", f"{name}.{norm}", f"{name}.{consumer}"))
        return links

    def norms(self) -> Iterator[tuple[str, DomainBatchNorm2d]]:
        for name, module in self.named_modules():
            if isinstance(module, DomainBatchNorm2d):
                yield name, module

    def template(self) -> MultiDomainNetwork:
        """A weightless (meta-device) copy of the unpruned architecture."""
        with torch.device("meta"):
            return type(self).from_config(self.config)

    def conv_output_sizes(self, input_size: tuple[int, int, int]) -> dict[str, tuple[int, int]]:
        """Output (height, width) of every conv for one image of ``input_size`` (C, H, W)."""
        key = tuple(int(v) for v in input_size)
        if key not in self._sizes:
            template = self.template().eval()
            sizes: dict[str, tuple[int, int]] = {}
            hooks = [conv.register_forward_hook(
                lambda _m, _i, out, name=name: sizes.__setitem__(name, (int(out.shape[-2]), int(out.shape[-1]))))
                for name, conv in template.switched_convs()]
            with torch.no_grad():
                template(torch.empty((1, *key), device="meta"), template.domains[0])
            for hook in hooks:
                hook.remove()
            self._sizes[key] = sizes  # type: ignore[index]
        return self._sizes[key]  # type: ignore[index]

    # -- switches --------------------------------------------------------------------------------------------
    def switch_state(self, domain: str) -> dict[str, torch.Tensor]:
        """The domain's binary switches: one BoolTensor per conv (over its current input channels)."""
        d = self.domain_index(domain)
        return {name: conv.in_masks()[d].clone() for name, conv in self.switched_convs()}

    def set_switch_state(self, domain: str, state: Mapping[str, torch.Tensor]) -> None:
        """Set a domain's switches from a 0/1 pattern shaped like :meth:`switch_state`'s output."""
        if self.pruned:
            raise ValueError("set_switch_state works on the switched model; a pruned model's switches are fixed")
        d = self.domain_index(domain)
        convs = dict(self.switched_convs())
        unknown = set(state) - set(convs)
        if unknown:
            raise KeyError(f"unknown switched layers {sorted(unknown)}; allowed layers are {list(convs)}")
        threshold = self.config["threshold"]
        margin = abs(self.config["switch_init"] - threshold) or 1e-2
        with torch.no_grad():
            for name, pattern in state.items():
                conv = convs[name]
                assert isinstance(conv, SwitchedConv2d)
                pattern = torch.as_tensor(pattern, device=conv.scores.device).bool()
                if pattern.shape != (conv.in_channels,):
                    raise ValueError(
                        f"switch state for layer {name!r} must have shape ({conv.in_channels},), "
                        f"got {tuple(pattern.shape)}"
                    )
                on = torch.full_like(conv.scores[d], threshold + margin)
                conv.scores[d] = torch.where(pattern, on, on - 2 * margin)

    def switch_parameters(self) -> list[nn.Parameter]:
        return [conv.scores for _, conv in self.switched_convs() if isinstance(conv, SwitchedConv2d)]


def network_from_config(config: Mapping[str, Any], family: str = "resnet26") -> MultiDomainNetwork:
    """Rebuild a network of ``family`` from its ``config`` (what :func:`bap.save_pruned` stores)."""
    import bap.model  # noqa: F401  (registers the families)
    import bap.resnet  # noqa: F401

    if family not in _FAMILIES:
        raise ValueError(f"unknown network family {family!r}; allowed values: {sorted(_FAMILIES)}")
    return _FAMILIES[family].from_config(config)


def build_network(arch: str, num_classes: Mapping[str, int], *, width: float = 1.0, blocks: int = 4,
                  **switched: Any) -> MultiDomainNetwork:
    """The switched network of ``arch`` (:data:`bap.choices.ARCHS`): the ResNet-26 at ``width``/``blocks``, or a
    torchvision ResNet with random weights. ``switched``: switch_init, threshold, switch_form, train_backbone."""
    from bap.choices import ARCHS

    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {list(ARCHS)}, got {arch!r}")
    if arch == "resnet26":
        from bap.model import MultiDomainResNet26

        return MultiDomainResNet26(num_classes, width=width, blocks=blocks, **switched)
    from bap.resnet import MultiDomainResNet

    return MultiDomainResNet(arch, num_classes, **switched)
