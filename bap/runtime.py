"""Device, precision and seeding helpers: CUDA gets bf16 autocast and channels_last, the CPU path stays plain."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available; use device='cpu' or 'auto'")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def generator_for(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` derived from ``seed`` and ``keys`` (e.g. the epoch), so an epoch replays exactly
    on resume. On the GPU, draws made there never wait for a copy from the host."""
    mixed = seed
    for key in keys:
        mixed = (mixed * 1_000_003 + key + 1) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(mixed)


def cycled_order(size: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``length`` indices into ``size`` items, on the generator's device: shuffled passes, reshuffled each pass
    (small domains repeat)."""
    passes = -(-length // size)
    return torch.cat([torch.randperm(size, generator=generator, device=generator.device)
                      for _ in range(passes)])[:length]


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    if enabled and device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def to_device_layout(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    module = module.to(device)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return module


def input_layout(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x
