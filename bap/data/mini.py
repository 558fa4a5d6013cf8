"""The offline mini-decathlon: five small, visibly different domains built without any download.

Domains (stand-ins for Decathlon domains; see ``mini_sources`` and ``mini_render``):

==========  ===================================================  =======  ======  =====================
domain      source                                               classes  images  stands in for
==========  ===================================================  =======  ======  =====================
digits      scikit-learn ``load_digits``, recoloured              10       1,797   svhn
faces       scikit-image ``lfw_subset``, augmented per split      2        585     daimlerpedcls
textures    crops of 8 scikit-image pictures                      8        1,200   dtd
glyphs      Latin/Greek/Cyrillic letters in DejaVu fonts          24       1,200   omniglot
signs       procedural traffic-sign-like shapes on clutter        10       1,200   gtsrb
==========  ===================================================  =======  ======  =====================

Splits are 60/20/20 per class and fixed by ``seed``. Images are stored at ``size`` (36) px and the network
sees a random (train) or centre (eval) ``crop`` (32) px window; horizontal flips are off for digits, glyphs
and signs, as for their Decathlon counterparts.

Each domain is built once per ``(version, size, seed)`` and cached as
``<cache>/v<version>/<domain>_s<size>_seed<seed>.pt``; the cache defaults to ``$BAP_CACHE_DIR/mini`` or
``~/.cache/bap/mini``. A build depends only on the seed, so the same seed gives bitwise identical tensors,
also after the cache is deleted.

Baselines: ``baseline_error`` is None unless ``mini_baseline.json`` (next to this file) holds
``{domain: error}``; it is read at every load, so writing it needs no rebuild.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bap.data._mini_common import RawDomain, domain_rng
from bap.data.cache import channel_stats, load_if_valid, save_or_warn, user_cache_dir
from bap.data.domain import DomainData, DomainSplit, select_domains
from bap.data.load import MINI_DOMAINS
from bap.data.mini_render import build_glyphs, build_signs
from bap.data.mini_sources import build_digits, build_faces, build_textures

MINI_VERSION = 2  # bump when any builder changes its output (v1: pre-release)
MINI_BASELINE_PATH = Path(__file__).with_name("mini_baseline.json")

_BUILDERS: dict[str, Callable[[int, np.random.Generator], RawDomain]] = {
    "digits": build_digits,
    "faces": build_faces,
    "textures": build_textures,
    "glyphs": build_glyphs,
    "signs": build_signs,
}
_NO_FLIP = frozenset({"digits", "glyphs", "signs"})
_MIN_SIZE = 8


def default_mini_cache_dir() -> Path:
    """``$BAP_CACHE_DIR/mini`` if the variable is set, else ``~/.cache/bap/mini``."""
    return user_cache_dir() / "mini"


def load_mini_baselines(path: Path | None = None) -> dict[str, float]:
    """Single-domain baseline errors ``{domain: error}`` from ``mini_baseline.json``; empty if it is absent.

    Args:
        path: the JSON file; default ``MINI_BASELINE_PATH`` (looked up at call time, so tests can patch it).

    Raises:
        ValueError: if the file is not a ``{domain: error}`` mapping with errors in [0, 1].
    """
    path = MINI_BASELINE_PATH if path is None else path
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object {{domain: error}}, got {type(raw).__name__}")
    out = {}
    for name, error in raw.items():
        if isinstance(error, bool) or not isinstance(error, int | float) or not 0.0 <= error <= 1.0:
            raise ValueError(
                f"{path}: baseline error of {name!r} must be a fraction in [0, 1], got {error!r}"
            )
        out[str(name)] = float(error)
    return out


def build_mini_domain(name: str, size: int, seed: int) -> dict[str, Any]:
    """Build one domain from scratch into the dict that is cached (splits, class names, train mean/std)."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown mini domain {name!r}; allowed values: {', '.join(MINI_DOMAINS)}")
    raw = _BUILDERS[name](size, domain_rng(seed, name))
    mean, std = channel_stats(raw.train.images)
    return {
        "header": _header(name, size, seed),
        "splits": {
            s: {"images": getattr(raw, s).images, "labels": getattr(raw, s).labels}
            for s in ("train", "val", "test")
        },
        "class_names": list(raw.class_names),
        "mean": mean,
        "std": std,
    }


def _header(name: str, size: int, seed: int) -> dict[str, Any]:
    return {"kind": "mini", "version": MINI_VERSION, "domain": name, "size": size, "seed": seed}


def load_mini(
    domains: Sequence[str] | None = None,
    *,
    size: int = 36,
    crop: int = 32,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> dict[str, DomainData]:
    """Load (building and caching on first use) the offline mini-decathlon.

    Args:
        domains: names from ``MINI_DOMAINS``; None for all of them.
        size: stored image side ``S`` in pixels.
        crop: side of the train (random) and eval (centre) crop the network sees.
        seed: fixes every random draw of the build and the train/val/test split.
        cache_dir: folder for the packed files; default :func:`default_mini_cache_dir`.

    Returns:
        ``{domain: DomainData}`` in the order of ``MINI_DOMAINS``.

    Raises:
        KeyError: unknown domain name.
        ValueError: ``size`` below 8 px or ``crop`` not in ``1..size``.
    """
    if size < _MIN_SIZE:
        raise ValueError(f"size must be at least {_MIN_SIZE} px, got {size}")
    if not 0 < crop <= size:
        raise ValueError(f"crop must be in 1..size={size}, got {crop}")
    names = select_domains(domains, MINI_DOMAINS, MINI_DOMAINS)
    folder = (
        Path(cache_dir).expanduser() if cache_dir is not None else default_mini_cache_dir()
    ) / f"v{MINI_VERSION}"
    baselines = load_mini_baselines()
    out = {}
    for name in names:
        path = folder / f"{name}_s{size}_seed{seed}.pt"
        packed = load_if_valid(path, _header(name, size, seed))
        if packed is None:
            packed = build_mini_domain(name, size, seed)
            save_or_warn(packed, path)
        splits = {
            s: DomainSplit(packed["splits"][s]["images"], packed["splits"][s]["labels"])
            for s in packed["splits"]
        }
        out[name] = DomainData(
            name=name,
            num_classes=len(packed["class_names"]),
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            mean=tuple(packed["mean"]),
            std=tuple(packed["std"]),
            crop=crop,
            flip=name not in _NO_FLIP,
            class_names=tuple(packed["class_names"]),
            baseline_error=baselines.get(name),
        )
    return out
