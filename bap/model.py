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

from bap.blocks import BasicBlock, DomainBatchNorm2d, ZeroPadShortcut
from bap.network import MultiDomainNetwork
from bap.switches import SwitchedConv2d, SwitchForm

__all__ = ["BASE_WIDTHS", "BasicBlock", "DomainBatchNorm2d", "MultiDomainResNet26", "ZeroPadShortcut"]

BASE_WIDTHS = (32, 64, 128, 256)  # stem, stage 1, stage 2, stage 3


class MultiDomainResNet26(MultiDomainNetwork, family="resnet26"):
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
        classes = self._init_domains(num_classes)
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.config: dict[str, Any] = {
            "num_classes": classes,
            "width": float(width),
            "blocks": int(blocks),
            "switch_init": float(switch_init),
            "threshold": float(threshold),
            "switch_form": switch_form,
            "train_backbone": bool(train_backbone),
        }
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

    # -- structure -------------------------------------------------------------------------------------------
    def residual_blocks(self) -> Iterator[tuple[str, BasicBlock]]:
        for stage in (1, 2, 3):
            for i, block in enumerate(getattr(self, f"layer{stage}")):
                yield f"layer{stage}.{i}", block

    def forward_features(self, x: torch.Tensor, d: int | torch.Tensor) -> torch.Tensor:
        x = self.stem_bn(self.stem(x, d), d)
        for _, block in self.residual_blocks():
            x = block(x, d)
        x = F.relu(self.head_bn(x, d))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

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
