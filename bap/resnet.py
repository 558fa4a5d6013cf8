"""Any torchvision ResNet (18/34/50/101/152) as a multi-domain switched network: :func:`from_torchvision`.

The layout is torchvision's, layer for layer and name for name (``conv1``, ``bn1``, ``layer1.0.conv2``,
``layer2.0.downsample.0``): a 7x7 stride-2 stem with BN and ReLU, 3x3 max pooling, four stages of BasicBlocks or
v1.5 Bottlenecks (the stride on the 3x3 conv) with projection shortcuts, global average pooling. Every conv is a
shared :class:`bap.switches.SwitchedConv2d` (frozen by default) whose input channels are switched per domain --
the stem's RGB inputs and the projection shortcuts' inputs included; every BN and the linear head are per domain.
Switches, costs and pruning are those of every :class:`bap.network.MultiDomainNetwork`.

Pre-trained weights come from a local file in torchvision's state-dict format (e.g. ``resnet50-0676ba61.pth``):
nothing is downloaded. Its BNs are copied into every domain; its ``fc`` becomes the head of the ImageNet domain
(``imagenet_domain``), when the network has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bap.blocks import BLOCKS, DomainBatchNorm2d
from bap.network import MultiDomainNetwork
from bap.switches import SwitchedConv2d, SwitchForm

# torchvision's builders: name -> (block, blocks per stage)
RESNETS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
STAGE_PLANES = (64, 128, 256, 512)
IMAGENET_DOMAIN = "imagenet"


class MultiDomainResNet(MultiDomainNetwork, family="torchvision_resnet"):
    """A torchvision ResNet shared by several domains, each with its own switches, BNs and classifier.

    Called as ``model(x, domain)``. Build it with :func:`from_torchvision`; the constructor takes the plain
    architecture (what a saved pruned model stores).

    Args:
        arch: one of :data:`RESNETS`.
        num_classes: classes per domain; its order fixes the domain order.
        switch_init, threshold, switch_form, train_backbone: as for :class:`bap.MultiDomainResNet26`.
        imagenet_domain: the domain whose head a checkpoint's ``fc`` initialises.
    """

    def __init__(
        self,
        arch: str,
        num_classes: Mapping[str, int],
        *,
        switch_init: float = 1e-2,
        threshold: float = 5e-3,
        switch_form: SwitchForm = "auto",
        train_backbone: bool = False,
        imagenet_domain: str = IMAGENET_DOMAIN,
    ) -> None:
        super().__init__()
        if arch not in RESNETS:
            raise ValueError(f"arch must be one of {list(RESNETS)}, got {arch!r}")
        classes = self._init_domains(num_classes)
        self.config: dict[str, Any] = {
            "arch": arch, "num_classes": classes, "switch_init": float(switch_init), "threshold": float(threshold),
            "switch_form": switch_form, "train_backbone": bool(train_backbone), "imagenet_domain": imagenet_domain,
        }
        block_name, layers = RESNETS[arch]
        block = BLOCKS[block_name]
        num_domains = len(self.domains)
        conv = {"switch_init": switch_init, "threshold": threshold, "form": switch_form,
                "train_weight": train_backbone}
        self.conv1 = SwitchedConv2d(3, 64, num_domains, stride=2, kernel_size=7, **conv)
        self.bn1 = DomainBatchNorm2d(64, num_domains)
        channels = 64
        for stage, (planes, count) in enumerate(zip(STAGE_PLANES, layers, strict=True), start=1):
            stage_blocks = []
            for i in range(count):
                stride = 2 if i == 0 and stage > 1 else 1
                stage_blocks.append(block(channels, planes, stride, num_domains, shortcut="projection", **conv))
                channels = planes * block.expansion
            self.add_module(f"layer{stage}", nn.ModuleList(stage_blocks))
        self.features = channels
        self.heads = nn.ModuleList(nn.Linear(channels, n) for n in classes.values())

    def forward_features(self, x: torch.Tensor, d: int | torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x, d), d))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        for stage in (1, 2, 3, 4):
            for block in getattr(self, f"layer{stage}"):
                x = block(x, d)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    # -- torchvision weights ---------------------------------------------------------------------------------
    def load_torchvision_state(self, state: Mapping[str, torch.Tensor], source: str = "the state dict") -> None:
        """Copy a torchvision ResNet state dict of this ``arch``: convs shared, BNs into every domain, ``fc`` into
        the ImageNet domain's head (when there is one and its classes match).

        Raises:
            ValueError: naming the missing, unexpected or mis-shaped keys and the architecture expected.
        """
        if self.pruned:
            raise ValueError("load torchvision weights into the switched model, before pruning")
        arch = self.config["arch"]
        expected = torchvision_shapes(arch)
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected) - {"fc.weight", "fc.bias"})
        wrong = [f"{k}: {tuple(state[k].shape)} (expected {expected[k]})" for k in expected
                 if k in state and tuple(state[k].shape) != expected[k]]
        if missing or unexpected or wrong:
            found = guess_arch(state)
            raise ValueError(
                f"{source} is not a torchvision {arch} state dict"
                f"{f' (it looks like {found})' if found and found != arch else ''}: "
                f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
                f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}, "
                f"mis-shaped {wrong[:5]}{' ...' if len(wrong) > 5 else ''}"
            )
        modules = dict(self.named_modules())
        imagenet = self.config["imagenet_domain"]
        with torch.no_grad():
            for key, value in state.items():
                owner, _, attr = key.rpartition(".")
                if owner == "fc":
                    if imagenet in self.domains:
                        head = self.heads[self.domain_index(imagenet)]
                        if head.out_features != value.shape[0]:
                            raise ValueError(
                                f"domain {imagenet!r} has {head.out_features} classes but the checkpoint's fc has "
                                f"{value.shape[0]}: give it num_classes[{imagenet!r}] = {value.shape[0]}")
                        getattr(head, attr).copy_(value)
                    continue
                module = modules[owner]
                if isinstance(module, DomainBatchNorm2d):
                    for bn in module.bns:
                        getattr(bn, attr).copy_(value)
                else:
                    getattr(module, attr).copy_(value)

    def load_backbone(self, path: str | Path) -> None:
        """Load a local torchvision weights file (``torch.save(resnet.state_dict())``, e.g. ``resnet50-*.pth``).

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is not a state dict of this architecture.
        """
        self.load_torchvision_state(read_state_dict(path), f"{str(path)!r}")


def torchvision_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of torchvision's ``arch`` without its classifier ``fc`` (optional in a file, and
    of any size), from a meta-device instance: no memory, no download."""
    import torchvision

    with torch.device("meta"):
        model = getattr(torchvision.models, arch)(weights=None)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if _backbone_key(k)}


def _backbone_key(key: str) -> bool:
    return not key.endswith("num_batches_tracked") and not key.startswith("fc.")


def guess_arch(state: Mapping[str, torch.Tensor]) -> str | None:
    """Which of :data:`RESNETS` a torchvision state dict's keys and shapes match, if any."""
    keys = {k for k in state if _backbone_key(k)}
    for arch in RESNETS:
        shapes = torchvision_shapes(arch)
        if keys == set(shapes) and all(tuple(state[k].shape) == shapes[k] for k in shapes):
            return arch
    return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file; a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {str(path)!r} does not exist (nothing is downloaded: give a local torchvision "
            "state-dict file such as resnet50-0676ba61.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{str(path)!r} cannot be read as a torch state dict: {err}".splitlines()[0]) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{str(path)!r} does not hold a state dict (a mapping of names to tensors)")
    return dict(state)


def _arch_of(module: nn.Module) -> str:
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    if not isinstance(module, ResNet):
        raise TypeError(f"backbone must be a torchvision ResNet or one of {list(RESNETS)}, got {type(module).__name__}")
    first = module.layer1[0]
    block = "basic" if isinstance(first, BasicBlock) else "bottleneck" if isinstance(first, Bottleneck) else None
    layers = tuple(len(getattr(module, f"layer{i}")) for i in (1, 2, 3, 4))
    for name, spec in RESNETS.items():
        if spec == (block, layers):
            return name
    raise ValueError(f"unsupported ResNet: {block} blocks {layers}; supported are {RESNETS}")


def from_torchvision(
    backbone: str | nn.Module,
    num_classes: Mapping[str, int],
    *,
    weights: str | Path | None = None,
    switch_init: float = 1e-2,
    threshold: float = 5e-3,
    switch_form: SwitchForm = "auto",
    train_backbone: bool = False,
    imagenet_domain: str = IMAGENET_DOMAIN,
) -> MultiDomainResNet:
    """A multi-domain switched network from a torchvision ResNet, with the API of :class:`bap.MultiDomainResNet26`.

    Args:
        backbone: a builder name (``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"``,
            ``"resnet152"``) or a torchvision ``ResNet`` instance, whose weights are copied.
        num_classes: classes per domain. A domain named ``imagenet_domain`` gets the checkpoint's ``fc``.
        weights: a local torchvision state-dict file; None keeps the instance's weights, or for a name torchvision's
            random initialisation.
        switch_init, threshold, switch_form, train_backbone: as for :class:`bap.MultiDomainResNet26`.
        imagenet_domain: which domain is ImageNet (optional; its data is a domain like the others).

    Raises:
        ValueError / TypeError: an unsupported backbone, or weights that do not match it (naming keys and shapes).
        FileNotFoundError: ``weights`` does not exist.
    """
    arch = backbone if isinstance(backbone, str) else _arch_of(backbone)
    model = MultiDomainResNet(arch, num_classes, switch_init=switch_init, threshold=threshold,
                              switch_form=switch_form, train_backbone=train_backbone, imagenet_domain=imagenet_domain)
    if weights is not None:
        model.load_backbone(weights)
    elif isinstance(backbone, nn.Module):
        model.load_torchvision_state(backbone.state_dict(), f"the given {arch}")
    return model

