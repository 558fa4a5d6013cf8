"""The residual building blocks every multi-domain ResNet here is made of: per-domain BNs, shortcuts, BasicBlock
and Bottleneck over switched convolutions.

Each block lists its *inner links* (``INNER_LINKS``): a conv whose output channels feed, through one per-domain BN
and a ReLU, exactly one other conv of the block. Such a channel is used only where that consumer's switch is on, so
counting treats it as live only there and pruning drops it with its BN entries when no domain uses it. Channels on
the residual stream (a block's output, read by the next block and by the shortcut) have several consumers: they
only lose kernel slices. Networks find their links through these lists, whatever the architecture.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bap.switches import SwitchedConv2d, pick

InnerLink = tuple[str, str, str]  # (producer conv, its BN, the only conv that reads it), relative to the block


class DomainBatchNorm2d(nn.Module):
    """One BatchNorm2d per domain over the same channels.

    ``domain`` is the domain's index: a Python int (eager: that domain's ``nn.BatchNorm2d`` itself), or a 0-dim
    integer tensor (what :class:`bap.compiled.CompiledDomains` traces, so one graph serves every domain): the
    domains' parameters are stacked and indexed by the tensor, and in training the running statistics of the
    indexed domain are updated exactly as its ``nn.BatchNorm2d`` would.
    """

    def __init__(self, num_features: int, num_domains: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.bns = nn.ModuleList(nn.BatchNorm2d(num_features) for _ in range(num_domains))

    def forward(self, x: torch.Tensor, domain: int | torch.Tensor) -> torch.Tensor:
        if self.num_features == 0:  # every filter feeding this BN was pruned
            return x
        if not isinstance(domain, torch.Tensor):
            return self.bns[domain](x)
        return self._indexed(x, domain)

    def _indexed(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        first = self.bns[0]
        weight = pick(torch.stack([bn.weight for bn in self.bns]), domain)
        bias = pick(torch.stack([bn.bias for bn in self.bns]), domain)
        if not self.training:
            mean = pick(torch.stack([bn.running_mean for bn in self.bns]), domain)
            var = pick(torch.stack([bn.running_var for bn in self.bns]), domain)
            return F.batch_norm(x, mean, var, weight, bias, False, 0.0, first.eps)
        with torch.no_grad():
            batch = x.detach().float()
            batch_mean = batch.mean(dim=(0, 2, 3))
            batch_var = batch.var(dim=(0, 2, 3), correction=1)
            for i, bn in enumerate(self.bns):
                chosen = domain == i
                tracked = bn.num_batches_tracked + chosen.long()
                momentum = 1.0 / tracked.clamp_min(1).float() if bn.momentum is None else bn.momentum
                bn.running_mean.copy_(torch.where(chosen, torch.lerp(bn.running_mean, batch_mean, momentum),
                                                  bn.running_mean))
                bn.running_var.copy_(torch.where(chosen, torch.lerp(bn.running_var, batch_var, momentum),
                                                 bn.running_var))
                bn.num_batches_tracked.copy_(tracked)
        return F.batch_norm(x, None, None, weight, bias, True, 0.0, first.eps)


class ZeroPadShortcut(nn.Module):
    """Parameter-free shortcut (the Decathlon ResNet-26): average-pool by the stride, zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor, domain: int | torch.Tensor | None = None) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride)
        if self.extra_channels > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x


class Projection(nn.Sequential):
    """Projection shortcut (torchvision's ``downsample``): a switched 1x1 conv with a stride, then per-domain BNs.
    Children named ``0`` and ``1`` as in torchvision, so layer names read the same."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, num_domains: int, **conv: Any) -> None:
        super().__init__(
            SwitchedConv2d(in_channels, out_channels, num_domains, stride=stride, kernel_size=1, **conv),
            DomainBatchNorm2d(out_channels, num_domains),
        )

    def forward(self, x: torch.Tensor, domain: int | torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self[1](self[0](x, domain), domain)


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int, num_domains: int,
                  **conv: Any) -> nn.Module | None:
    """None (identity) when shapes match, else a ``zero_pad`` or ``projection`` shortcut."""
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "zero_pad":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if kind == "projection":
        return Projection(in_channels, out_channels, stride, num_domains, **conv)
    raise ValueError(f"shortcut must be one of ['zero_pad', 'projection'], got {kind!r}")


class BasicBlock(nn.Module):
    """conv3x3 (stride) -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU; every conv switched."""

    expansion: ClassVar[int] = 1
    INNER_LINKS: ClassVar[tuple[InnerLink, ...]] = (("conv1", "bn1", "conv2"),)

    def __init__(self, in_channels: int, planes: int, stride: int, num_domains: int, *, shortcut: str = "zero_pad",
                 **conv: Any) -> None:
        super().__init__()
        self.conv1 = SwitchedConv2d(in_channels, planes, num_domains, stride=stride, **conv)
        self.bn1 = DomainBatchNorm2d(planes, num_domains)
        self.conv2 = SwitchedConv2d(planes, planes, num_domains, **conv)
        self.bn2 = DomainBatchNorm2d(planes, num_domains)
        self.downsample = make_shortcut(shortcut, in_channels, planes, stride, num_domains, **conv)

    def forward(self, x: torch.Tensor, domain: int | torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x, domain)
        out = F.relu(self.bn1(self.conv1(x, domain), domain))
        out = self.bn2(self.conv2(out, domain), domain)
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: 1x1 -> 3x3 (stride) -> 1x1 (x4 channels), BN after each, the shortcut,
    then ReLU; every conv switched. Both inner widths are links: conv1 feeds only conv2, conv2 only conv3."""

    expansion: ClassVar[int] = 4
    INNER_LINKS: ClassVar[tuple[InnerLink, ...]] = (("conv1", "bn1", "conv2"), ("conv2", "bn2", "conv3"))

    def __init__(self, in_channels: int, planes: int, stride: int, num_domains: int, *,
                 shortcut: str = "projection", **conv: Any) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = SwitchedConv2d(in_channels, planes, num_domains, kernel_size=1, **conv)
        self.bn1 = DomainBatchNorm2d(planes, num_domains)
        self.conv2 = SwitchedConv2d(planes, planes, num_domains, stride=stride, **conv)
        self.bn2 = DomainBatchNorm2d(planes, num_domains)
        self.conv3 = SwitchedConv2d(planes, out_channels, num_domains, kernel_size=1, **conv)
        self.bn3 = DomainBatchNorm2d(out_channels, num_domains)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride, num_domains, **conv)

    def forward(self, x: torch.Tensor, domain: int | torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x, domain)
        out = F.relu(self.bn1(self.conv1(x, domain), domain))
        out = F.relu(self.bn2(self.conv2(out, domain), domain))
        out = self.bn3(self.conv3(out, domain), domain)
        return F.relu(out + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
