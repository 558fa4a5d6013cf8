"""The two containers every loader returns: one split of one domain, and one domain with its input recipe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class DomainSplit:
    """One split of one domain, packed in memory.

    Attributes:
        images: uint8 tensor of shape ``(N, 3, S, S)``, ``S`` being the stored size.
        labels: int64 tensor of shape ``(N,)`` with values in ``0..num_classes-1``.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 (N, 3, S, S), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.images.shape[2] != self.images.shape[3]:
            raise ValueError(f"images must be square, got {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be int64 of shape ({self.images.shape[0]},), "
                f"got {self.labels.dtype} {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def empty(cls, size: int) -> DomainSplit:
        """A split with no images (e.g. a test split without labelled annotations)."""
        return cls(torch.empty((0, 3, size, size), dtype=torch.uint8), torch.empty((0,), dtype=torch.int64))


@dataclass(frozen=True, eq=False)
class DomainData:
    """One domain: its three splits, its normalisation and the crop/flip recipe the network input follows.

    ``eq=False`` because tensors have no truth value: two instances compare by identity.

    Attributes:
        name: domain key, e.g. ``"svhn"`` or ``"digits"``.
        num_classes: number of classes; labels are in ``0..num_classes-1``.
        train: training split.
        val: validation split.
        test: test split; empty (N=0) when no labelled test annotations exist.
        mean: per-channel mean of the train images, in [0, 1] units.
        std: per-channel standard deviation of the train images, in [0, 1] units.
        crop: side of the square the network sees: random crop at train time, centre crop at eval time.
        flip: whether training applies random horizontal flips.
        class_names: one name per label, in label order.
        baseline_error: single-domain baseline error (fraction) used by the Decathlon score; None if unknown.
    """

    name: str
    num_classes: int
    train: DomainSplit
    val: DomainSplit
    test: DomainSplit
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop: int
    flip: bool
    class_names: tuple[str, ...]
    baseline_error: float | None = None

    @property
    def size(self) -> int:
        """Stored image side ``S`` (the network sees a ``crop`` x ``crop`` window of it)."""
        return int(self.train.images.shape[-1])

    def split(self, name: str) -> DomainSplit:
        """The split called ``name`` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in ("train", "val", "test"):
            raise KeyError(f"unknown split {name!r}; expected one of 'train', 'val', 'test'")
        return getattr(self, name)


def select_domains(
    requested: Sequence[str] | None, allowed: Sequence[str], default: Sequence[str]
) -> list[str]:
    """Validate requested domain names and return them in the canonical order of ``allowed``.

    Args:
        requested: names asked for, or None for ``default``.
        allowed: every name this data source knows, in its canonical order.
        default: what None means (e.g. the domains actually present on disk).

    Raises:
        KeyError: naming the unknown domain and the allowed values.
        ValueError: if ``requested`` is empty.
    """
    if requested is None:
        return [d for d in allowed if d in set(default)]
    if isinstance(requested, str):
        requested = [d for d in requested.split(",") if d]
    for name in requested:
        if name not in allowed:
            raise KeyError(f"unknown domain {name!r}; allowed values: {', '.join(allowed)}")
    if not requested:
        raise ValueError(f"no domain requested; allowed values: {', '.join(allowed)}")
    return [d for d in allowed if d in set(requested)]
