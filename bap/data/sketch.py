"""The ImageNet-to-Sketch benchmark in Piggyback's PyTorch layout, packed once into memory-mapped uint8 tensors.

Layout read (``ROOT`` holds the domain folders; names matched case-insensitively, see ``sketch_layout``)::

    ROOT/<domain>/train/<class>/<image>     domains: imagenet (optional), cubs_cropped, stanford_cars_cropped,
    ROOT/<domain>/test/<class>/<image>      flowers, wikiart, sketches

Labels are the index of the class folder among the sorted class folder names of ``train/`` (ImageFolder);
``test/`` must use a subset of those names. ``train/`` is split into train and a validation hold-out: per class,
``k = round(val_fraction * n)`` images (at least 1 when the class has 2 or more images, at most ``n - 1`` so
train keeps every class; none when ``val_fraction`` is 0) are drawn by a ``random.Random`` seeded with
``seed`` and the class name, so the split is deterministic and adding a class leaves the others' split alone.

Input recipe: images are stored at ``size`` x ``size`` (shorter side resized antialiased, then centre crop, as
Piggyback's ``Resize`` + ``CenterCrop``); the network sees a ``crop`` px window (random at train time, centre at
eval time) with horizontal flips; mean/std come from the train split. No baseline errors are known.

Packing decodes every image once (torchvision.io in a thread pool, PIL for the BMP/PPM/PGM/TIFF files
torchvision cannot read) and writes ``<cache>/sketch/<domain>_<split>_<size>.pt``. Each header holds a hash of
the split folder's ``(relative path, size, mtime_ns)`` list (plus ``val_fraction`` and ``seed`` for train/val),
so an edited tree is repacked. Packs are returned memory-mapped from the file, also right after being written:
at 224 px the five non-ImageNet domains are ~15 GB of uint8, which every trial on a node shares through the
page cache instead of holding a private copy.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bap.data.cache import channel_stats, load_if_valid, save_or_warn
from bap.data.decathlon import decode_resized, default_cache_dir, pack_images
from bap.data.domain import DomainData, DomainSplit, select_domains
from bap.data.sketch_layout import (
    IMG_EXTENSIONS,
    SKETCH_DOMAINS,
    candidate_folders,
    find_domain_folders,
    is_sketch_root,
    list_classes,
    list_images,
    missing_split_dirs,
    sketch_domains_on_disk,
)

__all__ = [
    "SKETCH_DOMAINS",
    "find_domain_folders",
    "holdout_indices",
    "is_sketch_root",
    "load_sketch",
    "sketch_domains_on_disk",
]

CACHE_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "val", "test")

_MAX_NAMED = 5  # how many names an error lists


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()


def _scan_split(
    domain: str, split_dir: Path, class_names: Sequence[str] | None
) -> tuple[list[str], list[str], list[int], str]:
    """The images of one split folder.

    Args:
        class_names: the train classes the labels index into; None when scanning ``train/`` itself.

    Returns:
        ``(class folder names, files relative to split_dir, labels, digest of (path, size, mtime_ns))``.

    Raises:
        ValueError: no class folder, a class folder without image, or test classes not among train's.
    """
    classes = list_classes(split_dir)
    if not classes:
        raise ValueError(
            f"{domain}: no class folder in {split_dir} (expected one subfolder per class holding the images)"
        )
    if class_names is None:
        class_names = classes
    else:
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            train_dir = split_dir.parent / "train"
            raise ValueError(
                f"{domain}: {split_dir} has {len(unknown)} class folder(s) that {train_dir} lacks, e.g. "
                f"{', '.join(unknown[:_MAX_NAMED])} (test classes must be a subset of train's; "
                f"{len(classes)} test vs {len(class_names)} train classes)"
            )
    label_of = {name: i for i, name in enumerate(class_names)}
    files: list[str] = []
    labels: list[int] = []
    stamps: list[tuple[str, int, int]] = []
    for name in classes:
        images = list_images(split_dir / name)
        if not images:
            raise ValueError(
                f"{domain}: class folder {split_dir / name} holds no image "
                f"(allowed extensions: {', '.join(IMG_EXTENSIONS)})"
            )
        for rel, size, mtime_ns in images:
            path = f"{name}/{rel}"
            files.append(path)
            labels.append(label_of[name])
            stamps.append((path, size, mtime_ns))
    return classes, files, labels, _digest(stamps)


def holdout_indices(
    labels: Sequence[int], class_names: Sequence[str], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split positions ``0..len(labels)-1`` into train and a stratified validation hold-out.

    Per class of ``n`` images, ``k = floor(val_fraction * n + 0.5)`` are held out, raised to 1 when ``n >= 2``
    and capped at ``n - 1``; none when ``val_fraction`` is 0. The draw is seeded by ``seed`` and the class name.

    Returns:
        ``(train positions, val positions)``, both sorted ascending.
    """
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    held: list[int] = []
    for y, members in by_class.items():
        n = len(members)
        if val_fraction <= 0 or n < 2:
            continue
        k = min(n - 1, max(1, math.floor(val_fraction * n + 0.5)))
        rng = random.Random(f"bap-sketch-val:{seed}:{class_names[y]}")
        held.extend(rng.sample(members, k))
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held)


def _decode_with_pil(path: Path, size: int) -> torch.Tensor | None:
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    try:
        with Image.open(path) as image:
            array = np.array(image.convert("RGB"))
    except Exception:  # PIL reports bad data through many exception types; any of them means "cannot decode"
        return None
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    tensor = TF.resize(tensor, [size], antialias=True)
    return TF.center_crop(tensor, [size, size]).contiguous()


def _decode(path: Path, size: int) -> torch.Tensor | None:
    """One image as uint8 ``(3, size, size)`` (shorter side resized, centre crop), or None if it cannot be read."""
    image = decode_resized(path, size, squash=False)
    return image if image is not None else _decode_with_pil(path, size)


def _pack(split_dir: Path, files: Sequence[str], size: int, workers: int | None, desc: str) -> torch.Tensor:
    """Decode ``files`` (relative to ``split_dir``) into one ``(N, 3, size, size)`` uint8 tensor.

    Raises:
        ValueError: naming the first files that cannot be decoded (none is skipped).
    """
    images, failed = pack_images(split_dir, files, size, False, workers, desc, decode=lambda p: _decode(p, size))
    if failed:
        bad = [str(split_dir / files[i]) for i in failed]
        raise ValueError(
            f"{desc}: {len(bad)} image file(s) cannot be decoded, e.g. {', '.join(bad[:_MAX_NAMED])} "
            "(fix or remove them; no image is skipped)"
        )
    return images


def _build(
    header: dict[str, Any],
    path: Path,
    split_dir: Path,
    files: Sequence[str],
    labels: Sequence[int],
    size: int,
    workers: int | None,
    with_stats: bool,
) -> dict[str, Any]:
    """Pack one split, write it to ``path`` and return it re-read memory-mapped (in memory if unwritable)."""
    images = _pack(split_dir, files, size, workers, f"{header['domain']}/{header['split']}")
    packed: dict[str, Any] = {
        "header": header,
        "images": images,
        "labels": torch.tensor(list(labels), dtype=torch.int64),
    }
    if with_stats:
        packed["mean"], packed["std"] = channel_stats(images)
    del images
    if save_or_warn(packed, path):
        # Dropping `packed` on return frees the in-RAM copy; the mapped file is paged in only as it is read.
        mapped = load_if_valid(path, header)
        if mapped is not None:
            return mapped
    return packed


def _load_domain(
    name: str,
    folder: Path,
    *,
    size: int,
    crop: int,
    val_fraction: float,
    seed: int,
    cache: Path,
    workers: int | None,
) -> DomainData:
    train_dir, test_dir = folder / "train", folder / "test"
    classes, files, labels, train_digest = _scan_split(name, train_dir, None)
    _, test_files, test_labels, test_digest = _scan_split(name, test_dir, classes)
    base = {"kind": "sketch", "version": CACHE_VERSION, "domain": name, "size": size}
    headers = {
        "train": {
            **base,
            "split": "train",
            "files": train_digest,
            "val_fraction": val_fraction,
            "seed": seed,
        },
        "val": {**base, "split": "val", "files": train_digest, "val_fraction": val_fraction, "seed": seed},
        # Test labels index train's classes, so a renamed train class must repack test too.
        "test": {**base, "split": "test", "files": test_digest, "classes": _digest(classes)},
    }
    paths = {s: cache / f"{name}_{s}_{size}.pt" for s in SPLITS}
    packed = {s: load_if_valid(paths[s], headers[s]) for s in SPLITS}

    if packed["train"] is None or packed["val"] is None:
        train_idx, val_idx = holdout_indices(labels, classes, val_fraction, seed)
        for split, idx in (("train", train_idx), ("val", val_idx)):
            if packed[split] is None:
                packed[split] = _build(
                    headers[split],
                    paths[split],
                    train_dir,
                    [files[i] for i in idx],
                    [labels[i] for i in idx],
                    size,
                    workers,
                    with_stats=split == "train",
                )
    if packed["test"] is None:
        packed["test"] = _build(
            headers["test"], paths["test"], test_dir, test_files, test_labels, size, workers, with_stats=False
        )
    splits = {s: DomainSplit(packed[s]["images"], packed[s]["labels"]) for s in SPLITS}
    return DomainData(
        name=name,
        num_classes=len(classes),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        mean=tuple(packed["train"]["mean"]),
        std=tuple(packed["train"]["std"]),
        crop=crop,
        flip=True,
        class_names=tuple(classes),
        baseline_error=None,
    )


def _describe_found(root: Path) -> str:
    found = [
        f"{f.name}/ ({', '.join(m)} missing)" if (m := missing_split_dirs(f)) else f"{f.name}/"
        for folders in candidate_folders(root).values()
        for f in folders
    ]
    return ", ".join(found) if found else "none"


def _select(root: Path, domains: Sequence[str] | None) -> dict[str, Path]:
    """The folders of the requested domains (or of every complete one), in canonical order, checked."""
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet-to-Sketch root folder not found: {root}")
    folders = find_domain_folders(root)
    incomplete = {
        d: fs[0] for d, fs in candidate_folders(root).items() if d not in folders
    }  # name matches, but train/ or test/ is missing
    expected = (
        f"expected one folder per domain among {', '.join(SKETCH_DOMAINS)} (case-insensitive), "
        "each holding train/ and test/ with one subfolder per class"
    )
    if domains is None:
        if not folders:
            raise FileNotFoundError(
                f"no ImageNet-to-Sketch domain under {root}: {expected}; domain folders found: "
                f"{_describe_found(root)}"
            )
        for d, folder in incomplete.items():
            warnings.warn(
                f"{d}: skipping {folder}, which has no {' or '.join(missing_split_dirs(folder))}/ folder",
                stacklevel=3,
            )
        names = list(folders)
    else:
        names = select_domains(domains, SKETCH_DOMAINS, list(folders))
    for name in names:
        if name in incomplete:
            folder = incomplete[name]
            raise FileNotFoundError(
                f"{name}: {folder} has no {' or '.join(f'{s}/' for s in missing_split_dirs(folder))} folder "
                f"(expected {folder}/train/<class>/ and {folder}/test/<class>/)"
            )
        if name not in folders:
            raise FileNotFoundError(
                f"domain {name!r} not found under {root} (looked for a folder named {name}, "
                f"case-insensitive); domain folders found: {_describe_found(root)}"
            )
    return {n: folders[n] for n in names}


def load_sketch(
    root: str | Path,
    domains: Sequence[str] | None = None,
    *,
    size: int = 224,
    crop: int = 224,
    val_fraction: float = 0.1,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    seed: int = 0,
) -> dict[str, DomainData]:
    """Load ImageNet-to-Sketch domains as memory-mapped uint8 tensors, packing them into the cache on first use.

    Args:
        root: the folder holding the domain folders (``cubs_cropped/``, ``flowers/``, ...).
        domains: names from ``SKETCH_DOMAINS``; None loads every domain found on disk.
        size: stored image side ``S`` in pixels.
        crop: side of the train (random) and eval (centre) crop the network sees, in ``1..size``.
        val_fraction: share of each train class held out as the validation split, in [0, 1).
        cache_dir: where packed files go (under ``sketch/``); default: ``$BAP_CACHE_DIR``, else
            ``ROOT/.bap_cache`` if writable, else ``~/.cache/bap``.
        workers: image-decoding threads; default ``min(8, cpu_count)``.
        seed: fixes the validation hold-out.

    Returns:
        ``{domain: DomainData}`` in the canonical order of ``SKETCH_DOMAINS``.

    Raises:
        FileNotFoundError: missing root, no domain under it, a requested domain or its train/ or test/ missing.
        KeyError: unknown domain name.
        ValueError: bad ``size``/``crop``/``val_fraction``; a domain name matching two folders; no class folder,
            a class folder without image, test classes not among train's, or an image that cannot be decoded.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size!r}")
    if isinstance(crop, bool) or not isinstance(crop, int) or not 0 < crop <= size:
        raise ValueError(f"crop must be in 1..size={size}, got {crop!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    base = Path(root).expanduser()
    folders = _select(base, domains)
    cache = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(base)) / "sketch"
    return {
        name: _load_domain(
            name,
            folder,
            size=size,
            crop=crop,
            val_fraction=float(val_fraction),
            seed=seed,
            cache=cache,
            workers=workers,
        )
        for name, folder in folders.items()
    }
