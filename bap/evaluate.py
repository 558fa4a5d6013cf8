"""Evaluation of a (switched or pruned) multi-domain model on one split of every domain."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from bap.data import DomainData, prepare_batch
from bap.runtime import autocast, input_layout


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    data: DomainData,
    split: str,
    *,
    device: torch.device,
    batch_size: int = 256,
    amp: bool = False,
) -> torch.Tensor:
    """Predicted class of every image of ``data.<split>`` (centre crop), as a CPU int64 tensor."""
    was_training = model.training
    model.eval()
    images = getattr(data, split).images
    predictions = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        x = input_layout(prepare_batch(batch, data, train=False))
        with autocast(device, amp):
            predictions.append(model(x, data.name).argmax(dim=1).cpu())
    model.train(was_training)
    return torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)


def accuracies(predictions: Mapping[str, torch.Tensor], datasets: Mapping[str, DomainData], split: str) -> dict:
    """Top-1 accuracy per domain, in [0, 1]."""
    out = {}
    for name, predicted in predictions.items():
        labels = getattr(datasets[name], split).labels
        out[name] = float((predicted == labels).float().mean()) if len(labels) else float("nan")
    return out
