"""Helpers shared by the mini-decathlon builders: the raw-domain container, splitting and resizing."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / val / test


@dataclass(frozen=True, eq=False)
class RawSplit:
    """One split as built: uint8 ``(N, 3, S, S)`` images and int64 ``(N,)`` labels."""

    images: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True, eq=False)
class RawDomain:
    """What a builder returns: the three splits and the class names."""

    train: RawSplit
    val: RawSplit
    test: RawSplit
    class_names: tuple[str, ...]


def domain_rng(seed: int, name: str) -> np.random.Generator:
    """A generator that depends only on ``(seed, name)``: building one domain never shifts another's draws."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def stratified_split(
    labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a per-class ``SPLIT_FRACTIONS`` train/val/test split, each sorted.

    Every class with at least 3 samples gets at least one in each split.
    """
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_val = max(1, round(len(idx) * SPLIT_FRACTIONS[1])) if len(idx) >= 3 else 0
        n_test = max(1, round(len(idx) * SPLIT_FRACTIONS[2])) if len(idx) >= 3 else 0
        n_train = len(idx) - n_val - n_test
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train : n_train + n_val])
        parts[2].append(idx[n_train + n_val :])
    train, val, test = (np.sort(np.concatenate(p)) for p in parts)
    return train, val, test


def resize_float(images: np.ndarray, size: int) -> torch.Tensor:
    """Float images ``(N, H, W[, C])`` in [0, 1] -> float ``(N, C, size, size)``, antialiased."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    x = x.unsqueeze(-1) if x.ndim == 3 else x
    x = x.permute(0, 3, 1, 2)
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] with 1 or 3 channels -> uint8 with 3 channels (grey is repeated)."""
    x = (images.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x.contiguous()


def pil_to_tensor(image: object) -> torch.Tensor:
    """A PIL image (L or RGB) -> uint8 ``(3, H, W)``."""
    array = np.asarray(image, dtype=np.uint8)
    array = np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array[:, :, :3]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def split_by_index(images: torch.Tensor, labels: np.ndarray, rng: np.random.Generator) -> dict[str, RawSplit]:
    """Stratified train/val/test split of already-built images (for domains with independent samples)."""
    label_tensor = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    out = {}
    for name, idx in zip(("train", "val", "test"), stratified_split(np.asarray(labels), rng)):
        index = torch.from_numpy(idx)
        out[name] = RawSplit(images[index].contiguous(), label_tensor[index].contiguous())
    return out
