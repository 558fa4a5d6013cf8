"""The typed configuration of one training run, validated before anything starts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bap.choices import ARCHS, BUDGET_PENALTIES, COST_KINDS, SHARING_KINDS, SWITCH_FORMS, check_budget

OPTIMIZERS = ("sgd", "adamw")
DEVICES = ("auto", "cpu", "cuda")
# The fields that decide which backbone a run starts from: a given checkpoint, or the one bap.pretrain trains (its
# cache key and folder). A sweep that searches none of them pretrains once, for every trial.
BACKBONE_FIELDS = ("arch", "pretrained", "pretrain_epochs", "pretrain_lr", "width", "blocks", "batch_size", "seed",
                   "cache_dir", "image_size", "crop")


@dataclass
class TrainConfig:
    """Everything one budget-aware training run depends on; ``to_dict``/``from_dict`` round-trip it.

    Budget and losses: ``budget`` caps each domain's usage (the cost-weighted share of switches that are on, cost
    in ``budget_cost`` units); ``sharing`` picks the parameter-sharing loss and ``sharing_weight`` its weight.
    Switches are trained with Adam (``switch_lr``); BNs and heads with ``optimizer`` at ``lr``/``weight_decay``.
    One optimizer step takes one batch of ``batch_size`` images from *every* domain (joint training).
    """

    data: str = "mini"  # "mini", a Visual Decathlon root folder or an ImageNet-to-Sketch root folder
    domains: tuple[str, ...] | None = None  # None = every domain found
    image_size: int | None = None  # stored image side; None = the data's default (Decathlon 72, Sketch 224)
    crop: int | None = None  # side the network sees (random crop in training); None = the data's default
    budget: float = 0.5
    budget_cost: str = "params"  # switches | params | macs
    budget_penalty: str = "lagrangian"  # lagrangian | hinge
    budget_anneal: float = 0.3  # fraction of the steps over which the target falls from 1.0 to the budget
    recovery: float = 0.2  # last fraction of the steps: budget enforced, switches frozen, BNs and heads train
    hinge_weight: float = 1.0
    sharing: str = "union"  # none | union | intersection | jaccard | pairwise | consensus (bap.losses)
    sharing_weight: float = 5.0
    sharing_cost: str | None = None  # unit the sharing loss weighs switches in: switches | params | macs; None = budget_cost
    sharing_learnable: bool = False
    union_budget: float | None = None
    switch_lr: float = 3e-4
    switch_threshold: float = 5e-3
    switch_init: float = 1e-2
    switch_form: str = "auto"
    dual_lr: float = 0.5
    lr: float = 0.05
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    epochs: int = 10
    batch_size: int = 32
    steps_per_epoch: int | None = None  # cap on optimizer steps per epoch (smoke runs)
    eval_batch_size: int = 256
    arch: str = "resnet26"  # resnet26 (the Decathlon network) or a torchvision ResNet: resnet18/34/50/101/152
    width: float = 0.25  # resnet26 only
    blocks: int = 1  # resnet26 only
    train_backbone: bool = False
    # A local backbone checkpoint: for resnet26 bap's own (None = pretrain one, cached, when pretrain_epochs > 0);
    # for a torchvision ResNet torchvision's state-dict file (resnet50-*.pth; None = random weights).
    pretrained: str | None = None
    pretrain_epochs: int = 15
    pretrain_lr: float = 0.05
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool | None = None  # torch.compile the training step, one graph for every domain; None = on for CUDA
    cache_dir: str | None = None
    # seconds each latency measurement of the pruned network runs at the end (bap.latency: every domain, batch 1 and
    # 64, on the CPU and on the run's GPU); 0 = no timing
    latency_min_time_s: float = 0.2
    extra: dict[str, Any] = field(default_factory=dict)  # free-form tags carried into metrics.json

    def __post_init__(self) -> None:
        if self.domains is not None:
            self.domains = tuple(self.domains)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field and its allowed values."""
        check_budget(self.budget)
        if self.union_budget is not None:
            check_budget(self.union_budget, "union_budget")
        _choice("budget_cost", self.budget_cost, COST_KINDS)
        if self.sharing_cost is not None:
            _choice("sharing_cost", self.sharing_cost, COST_KINDS)
        _choice("budget_penalty", self.budget_penalty, BUDGET_PENALTIES)
        _choice("sharing", self.sharing, SHARING_KINDS)
        _choice("switch_form", self.switch_form, SWITCH_FORMS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("device", self.device, DEVICES)
        _choice("arch", self.arch, ARCHS)
        if self.arch != "resnet26" and self.pretrained is None and self.pretrain_epochs > 0:
            raise ValueError(
                f"arch {self.arch} starts from torchvision weights, which bap does not pretrain: set pretrained to a "
                f"local {self.arch}-*.pth file (torchvision's state-dict format), or pretrain_epochs=0 to start "
                "from random weights")
        for name in ("image_size", "crop"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be an integer >= 1 or None (the data's default), "
                                 f"got {getattr(self, name)}")
        if self.image_size is not None and self.crop is not None and self.crop > self.image_size:
            raise ValueError(f"crop ({self.crop}) must be <= image_size ({self.image_size})")
        for name in ("switch_lr", "lr", "pretrain_lr"):
            _positive(name, getattr(self, name))
        for name in ("budget_anneal", "recovery"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1) (a fraction of the run's steps), got {getattr(self, name)}")
        if self.budget_anneal + self.recovery > 1.0:
            raise ValueError(f"budget_anneal + recovery must be <= 1, got {self.budget_anneal} + {self.recovery}")
        for name in ("sharing_weight", "weight_decay", "dual_lr", "hinge_weight", "latency_min_time_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("epochs", "batch_size", "eval_batch_size", "blocks"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 or None, got {self.steps_per_epoch}")
        if self.pretrain_epochs < 0:
            raise ValueError(f"pretrain_epochs must be >= 0, got {self.pretrain_epochs}")
        _positive("width", self.width)
        if self.switch_init <= self.switch_threshold:
            raise ValueError(
                f"switch_init ({self.switch_init}) must be above switch_threshold ({self.switch_threshold}) "
                "so that every switch starts ON"
            )
        if self.sharing_learnable and self.sharing_weight <= 0:
            raise ValueError("sharing_learnable needs sharing_weight > 0 (its initial value)")
        if self.domains is not None and len(self.domains) == 0:
            raise ValueError("domains must name at least one domain, or be None for every domain found")

    @property
    def needs_pretraining(self) -> bool:
        """No backbone checkpoint is given and one is to be pretrained (``pretrain_epochs > 0``, ResNet-26 only)."""
        return self.arch == "resnet26" and self.pretrained is None and self.pretrain_epochs > 0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["domains"] = None if self.domains is None else list(self.domains)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build and validate; unknown keys raise ValueError listing the allowed ones."""
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; allowed keys are {sorted(allowed)}")
        values = dict(values)
        if isinstance(values.get("domains"), str):
            values["domains"] = tuple(d for d in values["domains"].split(",") if d)
        return cls(**values)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
