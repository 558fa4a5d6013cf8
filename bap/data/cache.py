"""Packed-tensor cache files: where they live, how they are written atomically, the statistics stored in them.

Cache location, in order of precedence: an explicit ``cache_dir`` argument, then ``$BAP_CACHE_DIR``, then a
default chosen by the loader (``~/.cache/bap`` or a folder next to the data). Files are written to a temporary
name and then renamed, so parallel sweep workers that build the same file never read a half-written one.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

CACHE_ENV = "BAP_CACHE_DIR"
USER_CACHE = Path("~/.cache/bap")


def user_cache_dir() -> Path:
    """``$BAP_CACHE_DIR`` if set, else ``~/.cache/bap`` (not created)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else USER_CACHE.expanduser()


def is_writable_dir(path: Path) -> bool:
    """True if ``path`` exists or can be created, and a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError:
        return False
    return True


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same folder, then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a cache is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_or_warn(obj: dict[str, Any], path: Path) -> bool:
    """:func:`save_atomic`, but an unwritable cache only costs a rebuild next time: warn and return False."""
    try:
        save_atomic(obj, path)
    except OSError as err:
        warnings.warn(
            f"could not write the data cache {path} ({err}); the data will be rebuilt on the next load",
            stacklevel=3,
        )
        return False
    return True


def load_if_valid(path: Path, header: dict[str, Any]) -> dict[str, Any] | None:
    """The dict cached at ``path`` if the file exists, loads, and holds ``header``; else None."""
    if not path.is_file():
        return None
    try:
        # mmap: a large pack is paged in on demand and shared through the page cache by processes on one node.
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a truncated or foreign file is rebuilt, not fatal
        return None
    if not isinstance(obj, dict) or obj.get("header") != header:
        return None
    return obj


def channel_stats(
    images: torch.Tensor, chunk: int = 4096
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and (population) standard deviation of uint8 images ``(N, 3, S, S)``, in [0, 1] units.

    Accumulated in float64 chunk by chunk, so it is exact enough and memory-bounded for ImageNet-sized splits.

    Raises:
        ValueError: if ``images`` is empty.
    """
    if images.shape[0] == 0:
        raise ValueError("cannot compute mean/std of an empty split")
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0.0).sqrt().clamp_min(1e-6)
    m, s = mean.tolist(), std.tolist()
    return (m[0], m[1], m[2]), (s[0], s[1], s[2])
