"""Turn a packed uint8 batch into the float input the network sees: crop, flip, normalise — on any device.

Pure tensor ops (no PIL, no per-sample Python loop), so a batch already on the GPU stays there.
"""

from __future__ import annotations

import torch

from bap.data.domain import DomainData


def _offsets(batch: int, high: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``batch`` integers uniform in ``[0, high]``, drawn on the generator's device, moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(0, high + 1, (batch,), generator=generator, device=gen_device).to(device)


def prepare_batch(
    images: torch.Tensor,
    data: DomainData,
    *,
    train: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop, optionally flip, and normalise a batch of packed images.

    Train: an independent random ``data.crop`` window per sample, then (if ``data.flip``) a horizontal flip
    with probability 1/2 per sample; crop offsets are drawn before flips, both from ``generator``. Eval: the
    centre crop.

    Args:
        images: uint8 tensor ``(B, 3, S, S)`` on any device.
        data: the domain the batch comes from (its ``crop``, ``flip``, ``mean``, ``std``).
        train: random crop + flip if True, centre crop if False.
        generator: random source for train-time crops and flips (any device); the global RNG if None.

    Returns:
        float32 tensor ``(B, 3, crop, crop)`` on ``images.device``, normalised by the domain's mean and std.

    Raises:
        ValueError: if ``images`` is not uint8 ``(B, 3, S, S)`` with ``S >= data.crop``.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images (B, 3, S, S), got {images.dtype} {tuple(images.shape)}")
    batch, _, height, width = images.shape
    crop = data.crop
    if height < crop or width < crop:
        raise ValueError(
            f"images of {height}x{width} px are smaller than the crop {crop} of domain {data.name!r}"
        )
    device = images.device
    if train:
        top = _offsets(batch, height - crop, generator, device)
        left = _offsets(batch, width - crop, generator, device)
        steps = torch.arange(crop, device=device)
        rows = top[:, None] + steps  # (B, crop)
        cols = left[:, None] + steps
        if data.flip:
            gen_device = generator.device if generator is not None else torch.device("cpu")
            flip = torch.rand(batch, generator=generator, device=gen_device).to(device) < 0.5
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        sample = torch.arange(batch, device=device)[:, None, None, None]
        channel = torch.arange(3, device=device)[None, :, None, None]
        out = images[sample, channel, rows[:, None, :, None], cols[:, None, None, :]]
    else:
        top, left = (height - crop) // 2, (width - crop) // 2
        out = images[:, :, top : top + crop, left : left + crop]
    shift, scale = _normalisation(data.mean, data.std, device)
    return torch.addcmul(shift, out.to(torch.float32), scale)


_NORMALISATIONS: dict[tuple[tuple[float, ...], tuple[float, ...], torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def _normalisation(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x / 255 - mean) / std`` as one multiply-add: its shift and scale on ``device``, made once per domain and
    device (a fresh host-to-GPU copy per batch would make every training step wait for the GPU)."""
    key = (tuple(mean), tuple(std), device)
    if key not in _NORMALISATIONS:
        m = torch.tensor(mean, dtype=torch.float32)
        s = torch.tensor(std, dtype=torch.float32)
        _NORMALISATIONS[key] = ((-m / s).to(device).view(1, 3, 1, 1), (1.0 / (255.0 * s)).to(device).view(1, 3, 1, 1))
    return _NORMALISATIONS[key]
