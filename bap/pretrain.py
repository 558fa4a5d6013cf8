"""Backbone pretraining for when no pretrained checkpoint is given (the offline default has none).

All domains are trained jointly with every switch ON and the convolutions trainable (one batch per domain per
step, like the budget-aware run), then the shared convolutions and the first domain's BNs are saved as a backbone
checkpoint that :meth:`bap.MultiDomainResNet26.load_backbone` reads. The file is cached by everything it depends on,
so a sweep pretrains once and every trial reuses it by path.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from bap.config import TrainConfig
from bap.data import DomainData, prepare_batch
from bap.data.cache import user_cache_dir
from bap.model import MultiDomainResNet26
from bap.runtime import (
    autocast,
    cycled_order,
    generator_for,
    input_layout,
    resolve_device,
    seed_everything,
    to_device_layout,
)


def backbone_path(
    datasets: Mapping[str, DomainData], *, width: float, blocks: int, epochs: int, lr: float, batch_size: int,
    seed: int, cache_dir: str | Path | None = None,
) -> Path:
    """Where the cached backbone for these settings lives (a hash of everything it depends on)."""
    key = {
        "domains": {name: [d.num_classes, len(d.train.labels), int(d.train.images[:64].sum())]
                    for name, d in datasets.items()},
        "width": width, "blocks": blocks, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir else user_cache_dir()
    return root / "backbones" / f"resnet26_w{width}_b{blocks}_{digest}.pt"


def train_plain(
    datasets: Mapping[str, DomainData],
    *,
    width: float,
    blocks: int,
    epochs: int,
    lr: float = 0.05,
    batch_size: int = 32,
    seed: int = 0,
    device: str = "auto",
    log: bool = True,
) -> MultiDomainResNet26:
    """A plain network (every switch ON, convolutions trained) on ``datasets`` jointly, one batch per domain per
    step; with one domain this is the single-domain baseline."""
    seed_everything(seed)
    dev = resolve_device(device)
    model = MultiDomainResNet26({n: d.num_classes for n, d in datasets.items()}, width=width, blocks=blocks,
                                train_backbone=True)
    for scores in model.switch_parameters():
        scores.requires_grad_(False)  # every switch stays ON
    model = to_device_layout(model, dev)
    train_images = {n: d.train.images.to(dev) for n, d in datasets.items()}
    steps = max(len(d.train.labels) for d in datasets.values()) // batch_size or 1
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps)
    model.train()
    for epoch in range(epochs):
        generator = generator_for(seed, 10_000 + epoch)
        orders = {n: cycled_order(len(d.train.labels), steps * batch_size, generator) for n, d in datasets.items()}
        total = 0.0
        for step in range(steps):
            loss = torch.zeros((), device=dev)
            for name, data in datasets.items():
                index = orders[name][step * batch_size : (step + 1) * batch_size]
                x = input_layout(prepare_batch(train_images[name][index.to(dev)], data, train=True,
                                               generator=generator).to(dev))
                with autocast(dev, True):
                    loss = loss + F.cross_entropy(model(x, name).float(), data.train.labels[index].to(dev))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        if log:
            print(f"[plain {'+'.join(datasets)}] epoch {epoch + 1}/{epochs} loss {total / steps:.3f}", flush=True)
    return model


def pretrain_backbone(
    datasets: Mapping[str, DomainData],
    *,
    width: float,
    blocks: int,
    epochs: int,
    lr: float = 0.05,
    batch_size: int = 32,
    seed: int = 0,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    log: bool = True,
) -> Path:
    """Pretrain (or reuse the cached) shared backbone on all ``datasets`` jointly; returns the checkpoint path."""
    path = backbone_path(datasets, width=width, blocks=blocks, epochs=epochs, lr=lr, batch_size=batch_size,
                         seed=seed, cache_dir=cache_dir)
    if path.is_file():
        return path
    model = train_plain(datasets, width=width, blocks=blocks, epochs=epochs, lr=lr, batch_size=batch_size,
                        seed=seed, device=device, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(model.backbone_state(next(iter(datasets))), tmp)
    os.replace(tmp, path)  # atomic: concurrent trials never read a half-written file
    return path


def ensure_backbone(config: TrainConfig, datasets: Mapping[str, DomainData], *, log: bool = True) -> Path:
    """The backbone a run of ``config`` starts from when it gives none: pretrained on ``datasets`` with the run's
    settings (:data:`bap.config.BACKBONE_FIELDS`), or found in the cache."""
    return pretrain_backbone(datasets, width=config.width, blocks=config.blocks, epochs=config.pretrain_epochs,
                             lr=config.pretrain_lr, batch_size=config.batch_size, seed=config.seed,
                             device=config.device, cache_dir=config.cache_dir, log=log)
