"""Visual Decathlon from its on-disk release, packed once into uint8 tensors (paper.md §6).

Layout read (``ROOT`` is the ``decathlon-1.0/`` folder, or its parent)::

    ROOT/annotations/<domain>_{train,val}.json     COCO-style: images, annotations, categories
    ROOT/annotations/<domain>_test.json            optional, labelled (labels_test.zip); else test is empty
    ROOT/data/<domain>/<split>/000001.jpg          file_name in the JSON is relative to ROOT

Category ids are offset per domain (aircraft 10000001..10000100, ...): labels are their rank among the sorted
ids of the train file, and are paired with images by ``image_id``, never by list order.

Input recipe: the UniversalRepresentations-style variant of paper.md §6, "crop everywhere". Every image is
stored at ``size`` = 72 px; the network sees a random 64 px crop at train time and the centre 64 px crop at
eval time, for every domain (including imagenet12, which that repository keeps at 72), so all domains have the
same input size and MAC counts are comparable. Horizontal flips are on except for gtsrb, omniglot and svhn
(text, signs, digits). Storage follows the same variant: the shorter side is resized to ``size`` (antialiased)
and the centre ``size`` x ``size`` square kept, except aircraft and daimlerpedcls, which are squashed to
``size`` x ``size`` (``Resize((72, 72))``) so the wide aircraft photos are not cut.

Packing decodes every JPEG once (torchvision.io, in a thread pool) and writes
``<cache>/decathlon/<domain>_<split>_<size>.pt``; its header holds the size and mtime of the annotation files
it came from, so an edited annotation file triggers a rebuild. Later loads only read the packed files.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bap.data.cache import (
    CACHE_ENV,
    channel_stats,
    is_writable_dir,
    load_if_valid,
    save_or_warn,
    user_cache_dir,
)
from bap.data.domain import DomainData, DomainSplit, select_domains
from bap.score import DECATHLON_BASELINE_ERRORS

DECATHLON_DOMAINS: tuple[str, ...] = (
    "aircraft",
    "cifar100",
    "daimlerpedcls",
    "dtd",
    "gtsrb",
    "imagenet12",
    "omniglot",
    "svhn",
    "ucf101",
    "vgg-flowers",
)
NO_FLIP_DOMAINS = frozenset({"gtsrb", "omniglot", "svhn"})
SQUASH_DOMAINS = frozenset({"aircraft", "daimlerpedcls"})
SPLITS: tuple[str, ...] = ("train", "val", "test")

CACHE_VERSION = 1
# torchvision 0.29 deprecates its decoders (for torchcodec) with a notice per call: one per image is noise.
warnings.filterwarnings(
    "ignore",
    message="The image decoding and encoding capabilities of TorchVision",
    category=DeprecationWarning,
)

_CHUNK = 1024  # images decoded per thread-pool round (bounds the number of pending futures)
_MAX_NAMED = 5  # how many file names an error or warning lists


def find_root(root: str | Path) -> Path:
    """The ``decathlon-1.0`` folder: ``root`` if it holds ``annotations/``, else ``root/decathlon-1.0``.

    Raises:
        FileNotFoundError: if ``root`` does not exist or neither candidate has an ``annotations/`` folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Visual Decathlon root folder not found: {root}")
    for candidate in (root, root / "decathlon-1.0"):
        if (candidate / "annotations").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no annotations folder in {root} (looked for {root / 'annotations'} and "
        f"{root / 'decathlon-1.0' / 'annotations'}); extract decathlon-1.0-devkit.tar.gz there (paper.md §6)"
    )


def annotation_path(root: Path, domain: str, split: str) -> Path:
    """``ROOT/annotations/<domain>_<split>.json`` (``root`` already resolved by :func:`find_root`)."""
    return root / "annotations" / f"{domain}_{split}.json"


def decathlon_domains_on_disk(root: str | Path) -> list[str]:
    """Domains that have train and val annotation files and an image folder ``ROOT/data/<domain>``."""
    base = find_root(root)
    return [
        d
        for d in DECATHLON_DOMAINS
        if annotation_path(base, d, "train").is_file()
        and annotation_path(base, d, "val").is_file()
        and (base / "data" / d).is_dir()
    ]


def default_cache_dir(root: Path) -> Path:
    """``$BAP_CACHE_DIR`` if set, else ``ROOT/.bap_cache`` if writable, else ``~/.cache/bap``."""
    if os.environ.get(CACHE_ENV):
        return user_cache_dir()
    local = root / ".bap_cache"
    return local if is_writable_dir(local) else user_cache_dir()


def _file_stamp(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with path.open() as f:
        return json.load(f)


def read_categories(path: Path) -> tuple[list[int], list[str]]:
    """Sorted category ids of an annotation file and their names (label ``i`` is ``ids[i]``)."""
    categories = _read_json(path).get("categories") or []
    if not categories:
        raise ValueError(f"no categories in {path}")
    by_id = {int(c["id"]): str(c.get("name", c["id"])) for c in categories}
    ids = sorted(by_id)
    return ids, [by_id[i] for i in ids]


def read_labelled_images(path: Path, category_ids: Sequence[int]) -> tuple[list[str], list[int]]:
    """File names and labels (``0..C-1``) of every image of an annotation file, paired by ``image_id``.

    Raises:
        ValueError: if an image has no annotation, or an annotation names a category not in ``category_ids``.
    """
    ann = _read_json(path)
    label_of_category = {cid: i for i, cid in enumerate(category_ids)}
    category_of_image = {int(a["image_id"]): int(a["category_id"]) for a in ann.get("annotations", [])}
    files, labels, unlabelled = [], [], []
    for image in ann.get("images", []):
        category = category_of_image.get(int(image["id"]))
        if category is None:
            unlabelled.append(image["file_name"])
            continue
        if category not in label_of_category:
            raise ValueError(
                f"{path}: image {image['file_name']} has category_id {category}, which is not among the "
                f"{len(category_ids)} categories of the train annotations"
            )
        files.append(image["file_name"])
        labels.append(label_of_category[category])
    if unlabelled:
        raise ValueError(
            f"{path}: {len(unlabelled)} image(s) have no annotation, e.g. {unlabelled[:_MAX_NAMED]} "
            "(an unlabelled *_test_stripped.json cannot be used as a test split)"
        )
    return files, labels


def decode_resized(path: Path, size: int, squash: bool) -> torch.Tensor | None:
    """One image as uint8 ``(3, size, size)``, or None if it cannot be decoded.

    Shorter side resized to ``size`` (antialiased), then centre-cropped; ``squash`` resizes both sides
    instead.
    """
    # torchvision only here: importing it costs ~1.5 s (it pulls in torch._dynamo), which every sweep trial and
    # the sweep driver would pay while they only read the packed cache or the mini-decathlon.
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2 import functional as TF

    raw = path.read_bytes()
    try:
        image = decode_image(torch.frombuffer(bytearray(raw), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):  # torchvision reports corrupt or unknown data as RuntimeError
        return None
    target = [size, size] if squash else [size]
    image = TF.resize(image, target, antialias=True)
    return TF.center_crop(image, [size, size]).contiguous()


def pack_images(
    root: Path, files: Sequence[str], size: int, squash: bool, workers: int | None, desc: str,
    decode: Callable[[Path], torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Decode and resize ``files`` (relative to ``root``) into one uint8 tensor, with ``decode`` (a path to a
    ``(3, size, size)`` image or None) or else :func:`decode_resized`.

    Returns:
        The packed ``(M, 3, size, size)`` images of the files that decoded, and the indices of the others.

    Raises:
        FileNotFoundError: if any listed file is missing (names the first ones).
    """
    paths = [root / f for f in files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) listed for {desc} are missing, e.g. "
            f"{', '.join(map(str, missing[:_MAX_NAMED]))}"
        )
    images = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    failed: list[int] = []
    workers = workers or min(8, os.cpu_count() or 1)
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(paths), desc=desc, disable=None) as bar,
    ):
        for start in range(0, len(paths), _CHUNK):
            chunk = paths[start : start + _CHUNK]
            for offset, image in enumerate(pool.map(decode or (lambda p: decode_resized(p, size, squash)), chunk)):
                if image is None:
                    failed.append(start + offset)
                else:
                    images[start + offset] = image
            bar.update(len(chunk))
    if failed:
        keep = torch.ones(len(paths), dtype=torch.bool)
        keep[failed] = False
        images = images[keep]
    return images, failed


def _warn_skipped(desc: str, skipped: Sequence[str], total: int) -> None:
    if skipped:
        warnings.warn(
            f"{desc}: skipped {len(skipped)} of {total} image(s) that could not be decoded: "
            f"{', '.join(skipped[:_MAX_NAMED])}{' ...' if len(skipped) > _MAX_NAMED else ''}",
            stacklevel=3,
        )


def _load_split(
    root: Path,
    domain: str,
    split: str,
    size: int,
    cache_file: Path,
    workers: int | None,
) -> dict[str, Any]:
    """The packed split as a dict (images, labels, class ids/names, skipped files, and mean/std for train)."""
    train_json = annotation_path(root, domain, "train")
    split_json = annotation_path(root, domain, split)
    for path in (train_json, split_json):
        if not path.is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
    header = {
        "version": CACHE_VERSION,
        "domain": domain,
        "split": split,
        "size": size,
        "squash": domain in SQUASH_DOMAINS,
        "annotations": [_file_stamp(train_json), _file_stamp(split_json)],
    }
    desc = f"{domain}/{split}"
    cached = load_if_valid(cache_file, header)
    if cached is not None:
        _warn_skipped(desc, cached["skipped"], cached["total"])
        return cached

    category_ids, class_names = read_categories(train_json)
    files, labels = read_labelled_images(split_json, category_ids)
    if not files:
        raise ValueError(f"{split_json} lists no images")
    images, failed = pack_images(root, files, size, domain in SQUASH_DOMAINS, workers, desc)
    if len(failed) == len(files):
        raise RuntimeError(f"{desc}: none of the {len(files)} images could be decoded, e.g. {files[0]}")
    failed_set = set(failed)
    packed = {
        "header": header,
        "images": images,
        "labels": torch.tensor([y for i, y in enumerate(labels) if i not in failed_set], dtype=torch.int64),
        "category_ids": category_ids,
        "class_names": class_names,
        "skipped": [files[i] for i in failed],
        "total": len(files),
    }
    if split == "train":
        packed["mean"], packed["std"] = channel_stats(images)
    save_or_warn(packed, cache_file)
    _warn_skipped(desc, packed["skipped"], packed["total"])
    return packed


def load_decathlon(
    root: str | Path,
    domains: Sequence[str] | None = None,
    *,
    size: int = 72,
    crop: int = 64,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> dict[str, DomainData]:
    """Load Visual Decathlon domains as packed uint8 tensors, packing them into the cache on first use.

    Args:
        root: the ``decathlon-1.0`` folder, or the folder that contains it.
        domains: domain keys to load (see ``DECATHLON_DOMAINS``); None loads every domain found on disk.
        size: stored image side ``S`` in pixels.
        crop: side of the train (random) and eval (centre) crop the network sees.
        cache_dir: where packed files go (under ``decathlon/``); default :func:`default_cache_dir`.
        workers: JPEG-decoding threads; default ``min(8, cpu_count)``.

    Returns:
        ``{domain: DomainData}`` in the canonical order of ``DECATHLON_DOMAINS``.

    Raises:
        FileNotFoundError: missing root, annotations folder, annotation file or listed image.
        KeyError: unknown domain name.
        RuntimeError: a split none of whose images decode.
    """
    if not 0 < crop <= size:
        raise ValueError(f"crop must be in 1..size={size}, got {crop}")
    base = find_root(root)
    on_disk = decathlon_domains_on_disk(base)
    names = select_domains(domains, DECATHLON_DOMAINS, on_disk)
    if not names:
        raise FileNotFoundError(
            f"no Visual Decathlon domain found under {base} (need annotations/<domain>_train.json, "
            "_val.json and data/<domain>/)"
        )
    cache = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(base)) / "decathlon"
    out: dict[str, DomainData] = {}
    for name in names:
        packed = {}
        for split in SPLITS:
            if split == "test" and not annotation_path(base, name, "test").is_file():
                continue
            packed[split] = _load_split(base, name, split, size, cache / f"{name}_{split}_{size}.pt", workers)
        train = packed["train"]
        splits = {
            s: DomainSplit(packed[s]["images"], packed[s]["labels"])
            if s in packed
            else DomainSplit.empty(size)
            for s in SPLITS
        }
        out[name] = DomainData(
            name=name,
            num_classes=len(train["class_names"]),
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            mean=tuple(train["mean"]),
            std=tuple(train["std"]),
            crop=crop,
            flip=name not in NO_FLIP_DOMAINS,
            class_names=tuple(train["class_names"]),
            baseline_error=DECATHLON_BASELINE_ERRORS[name],
        )
    return out
