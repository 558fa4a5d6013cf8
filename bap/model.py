"""Multi-domain ResNet-26 of the Visual Decathlon (Rebuffi et al.), with per-domain switches, BNs and heads.

Layout (paper.md §2.1): a 3x3 stem 3->32 with BN; three stages of ``blocks`` BasicBlocks at widths 64/128/256
(times ``width``), the first block of each stage with stride 2; parameter-free shortcuts (2x2 average pooling, then
zero-padding of the extra channels); a per-domain BN+ReLU, global average pooling and a per-domain linear head.
Convolutions are shared by all domains (frozen by default); every BN, head and switch vector is per domain.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bap.switches import SwitchedConv2d, SwitchForm

BASE_WIDTHS = (32, 64, 128, 256)  # stem, stage 1, stage 2, stage 3


class DomainBatchNorm2d(nn.Module):
    """One BatchNorm2d per domain over the same channels."""

    def __init__(self, num_features: int, num_domains: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.bns = nn.ModuleList(nn.BatchNorm2d(num_features) for _ in range(num_domains))

    def forward(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        if self.num_features == 0:  # every filter feeding this BN was pruned
            return x
        return self.bns[domain](x)


class ZeroPadShortcut(nn.Module):
    """Parameter-free shortcut: average-pool by the stride, then zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride)
        if self.extra_channels > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU; both convs switched."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, num_domains: int, **conv: Any) -> None:
        super().__init__()
        self.conv1 = SwitchedConv2d(in_channels, out_channels, num_domains, stride=stride, **conv)
        self.bn1 = DomainBatchNorm2d(out_channels, num_domains)
        self.conv2 = SwitchedConv2d(out_channels, out_channels, num_domains, **conv)
        self.bn2 = DomainBatchNorm2d(out_channels, num_domains)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x, domain), domain))
        out = self.bn2(self.conv2(out, domain), domain)
        return F.relu(out + self.shortcut(x))


class MultiDomainResNet26(nn.Module):
    """ResNet-26 shared by several domains, each with its own switches, BNs and classifier.

    Called as ``model(x, domain)`` with ``domain`` one of the names in ``num_classes``.

    Args:
        num_classes: classes per domain; its order fixes the domain order.
        width: width multiplier (1.0 = the Decathlon ResNet-26; tests use tiny widths).
        blocks: BasicBlocks per stage (4 = ResNet-26).
        switch_init: initial real value of every switch (above ``threshold`` = ON).
        threshold: binarisation threshold of the switches.
        switch_form: where switches are applied in training (see :class:`bap.switches.SwitchedConv2d`).
        train_backbone: fine-tune the shared convolutions too (frozen by default, as in BA²).
    """

    def __init__(
        self,
        num_classes: Mapping[str, int],
        *,
        width: float = 1.0,
        blocks: int = 4,
        switch_init: float = 1e-2,
        threshold: float = 5e-3,
        switch_form: SwitchForm = "auto",
        train_backbone: bool = False,
    ) -> None:
        super().__init__()
        if not num_classes:
            raise ValueError("num_classes must name at least one domain, e.g. {'svhn': 10}")
        for name, classes in num_classes.items():
            if int(classes) < 1:
                raise ValueError(f"num_classes[{name!r}] must be >= 1, got {classes}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.config: dict[str, Any] = {
            "num_classes": {str(k): int(v) for k, v in num_classes.items()},
            "width": float(width),
            "blocks": int(blocks),
            "switch_init": float(switch_init),
            "threshold": float(threshold),
            "switch_form": switch_form,
            "train_backbone": bool(train_backbone),
        }
        self.domains: tuple[str, ...] = tuple(self.config["num_classes"])
        self._domain_index = {name: i for i, name in enumerate(self.domains)}
        self.pruned = False
        num_domains = len(self.domains)
        stem_width, *stage_widths = (max(1, round(w * width)) for w in BASE_WIDTHS)
        conv = {"switch_init": switch_init, "threshold": threshold, "form": switch_form,
                "train_weight": train_backbone}
        self.stem = SwitchedConv2d(3, stem_width, num_domains, **conv)
        self.stem_bn = DomainBatchNorm2d(stem_width, num_domains)
        channels = stem_width
        for stage, stage_width in enumerate(stage_widths, start=1):
            stage_blocks = []
            for i in range(blocks):
                stride = 2 if i == 0 else 1
                stage_blocks.append(BasicBlock(channels, stage_width, stride, num_domains, **conv))
                channels = stage_width
            self.add_module(f"layer{stage}", nn.ModuleList(stage_blocks))
        self.features = channels
        self.head_bn = DomainBatchNorm2d(channels, num_domains)
        self.heads = nn.ModuleList(nn.Linear(channels, n) for n in self.config["num_classes"].values())

    # -- domains ---------------------------------------------------------------------------------------------
    def domain_index(self, domain: str) -> int:
        """Position of ``domain``; KeyError naming the allowed domains otherwise."""
        try:
            return self._domain_index[domain]
        except KeyError:
            raise KeyError(f"unknown domain {domain!r}; this model has domains {list(self.domains)}") from None

    # -- structure -------------------------------------------------------------------------------------------
    def residual_blocks(self) -> Iterator[tuple[str, BasicBlock]]:
        for stage in (1, 2, 3):
            for i, block in enumerate(getattr(self, f"layer{stage}")):
                yield f"layer{stage}.{i}", block

    def switched_convs(self) -> Iterator[tuple[str, nn.Module]]:
        """Every switched convolution in forward order, keyed by its module name."""
        yield "stem", self.stem
        for name, block in self.residual_blocks():
            yield f"{name}.conv1", block.conv1
            yield f"{name}.conv2", block.conv2

    def forward(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        d = self.domain_index(domain)
        x = self.stem_bn(self.stem(x, d), d)
        for _, block in self.residual_blocks():
            x = block(x, d)
        x = F.relu(self.head_bn(x, d))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.heads[d](x)

    # -- switches --------------------------------------------------------------------------------------------
    def switch_state(self, domain: str) -> dict[str, torch.Tensor]:
        """The domain's binary switches: one BoolTensor per switched conv (over its current input channels)."""
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

    # -- checkpoints -----------------------------------------------------------------------------------------
    def backbone_state(self, domain: str | None = None) -> dict[str, Any]:
        """The shared convolutions (and one domain's BNs, if given) as a backbone checkpoint."""
        state: dict[str, Any] = {
            "arch": {"width": self.config["width"], "blocks": self.config["blocks"]},
            "convs": {name: conv.weight.detach().cpu().clone() for name, conv in self.switched_convs()},
        }
        if domain is not None:
            d = self.domain_index(domain)
            state["bns"] = {
                name: {k: v.detach().cpu().clone() for k, v in module.bns[d].state_dict().items()}
                for name, module in self.named_modules()
                if isinstance(module, DomainBatchNorm2d) and name != "head_bn"
            }
        return state

    def load_backbone(self, path: str | Path) -> None:
        """Load shared conv weights (and BNs, copied into every domain) from a local backbone checkpoint.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the checkpoint is not a backbone checkpoint or was saved for another architecture.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"backbone checkpoint {str(path)!r} does not exist")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or "convs" not in checkpoint:
            raise ValueError(
                f"{str(path)!r} is not a backbone checkpoint: expected a dict with key 'convs' "
                "(as written by bap's backbone pretraining / MultiDomainResNet26.backbone_state())"
            )
        arch = checkpoint.get("arch", {})
        convs = dict(self.switched_convs())
        missing = sorted(set(convs) - set(checkpoint["convs"]))
        unexpected = sorted(set(checkpoint["convs"]) - set(convs))
        if missing or unexpected:
            raise ValueError(
                f"backbone checkpoint {str(path)!r} (arch {arch}) does not match this model "
                f"(width={self.config['width']}, blocks={self.config['blocks']}): missing layers {missing}, "
                f"unexpected layers {unexpected}"
            )
        for name, weight in checkpoint["convs"].items():
            expected = tuple(convs[name].weight.shape)
            if tuple(weight.shape) != expected:
                raise ValueError(
                    f"backbone checkpoint layer {name!r} has shape {tuple(weight.shape)} but this model "
                    f"(width={self.config['width']}, blocks={self.config['blocks']}) expects {expected}; "
                    f"the checkpoint was saved for arch {arch}"
                )
        with torch.no_grad():
            for name, weight in checkpoint["convs"].items():
                convs[name].weight.copy_(weight)
            bns = dict(self.named_modules())
            for name, bn_state in checkpoint.get("bns", {}).items():
                module = bns.get(name)
                if not isinstance(module, DomainBatchNorm2d):
                    raise ValueError(f"backbone checkpoint has BN {name!r}, which this model lacks")
                for bn in module.bns:
                    bn.load_state_dict(bn_state)
