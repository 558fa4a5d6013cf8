"""One entry point for every data source: ``"mini"``, a Visual Decathlon root, or an ImageNet-to-Sketch root."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bap.data.sketch_layout import SKETCH_DOMAINS, candidate_folders, sketch_domains_on_disk

if TYPE_CHECKING:
    from bap.data.domain import DomainData

MINI_SPEC = "mini"
# Here, not in bap.data.mini, so that asking which domains there are (a sweep's validation) does not import torch.
MINI_DOMAINS: tuple[str, ...] = ("digits", "faces", "textures", "glyphs", "signs")
# The mini-decathlon's stored size and crop (the defaults of load_mini): its baselines were measured at these.
MINI_SIZE, MINI_CROP = 36, 32
DECATHLON_SIZE, DECATHLON_CROP = 72, 64
SKETCH_SIZE, SKETCH_CROP = 224, 224

DataFormat = Literal["mini", "decathlon", "sketch"]

_LAYOUTS = (
    "a Visual Decathlon root (a folder holding annotations/<domain>_train.json, or holding decathlon-1.0/ "
    "that does), or an ImageNet-to-Sketch root (a folder holding one or more of "
    f"{', '.join(SKETCH_DOMAINS)} (case-insensitive), each with train/<class>/ and test/<class>/)"
)


def data_format(spec: str | Path) -> DataFormat:
    """Which loader ``spec`` needs, without importing torch.

    A folder with a Decathlon ``annotations/`` (itself or ``decathlon-1.0/``) is ``"decathlon"``; one holding a
    folder named like an ImageNet-to-Sketch domain is ``"sketch"`` (checked after the Decathlon, so a folder
    holding both is read as the Decathlon).

    Raises:
        FileNotFoundError: ``spec`` is not ``"mini"`` and not a folder in either layout (the message describes both).
    """
    if str(spec) == MINI_SPEC:
        return "mini"
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data folder not found: {path}; expected {MINI_SPEC!r}, {_LAYOUTS}")
    if (path / "annotations").is_dir() or (path / "decathlon-1.0" / "annotations").is_dir():
        return "decathlon"
    # Any name-matching folder, even one lacking test/: load_sketch then says what is missing.
    if candidate_folders(path):
        return "sketch"
    raise FileNotFoundError(f"{path} is in no known data layout; expected {_LAYOUTS}")


def _check_mini_field(field: str, value: int | None, stored: int) -> None:
    if value is not None and value != stored:
        raise ValueError(
            f"{field}={value} is not available for the mini-decathlon, whose images are stored at size "
            f"{MINI_SIZE} with crop {MINI_CROP}; leave {field} unset or pass {stored}"
        )


def load_data(
    spec: str | Path,
    domains: Sequence[str] | None = None,
    *,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    workers: int | None = None,
    size: int | None = None,
    crop: int | None = None,
) -> dict[str, DomainData]:
    """Load the mini-decathlon (``spec == "mini"``), or the Visual Decathlon or ImageNet-to-Sketch at path ``spec``.

    Args:
        spec: ``"mini"``, a ``decathlon-1.0`` folder (or its parent), or an ImageNet-to-Sketch root.
        domains: domain names; None for all (mini: ``MINI_DOMAINS``; otherwise every domain on disk).
        cache_dir: where packed tensors are cached; each loader has its own default.
        seed: mini: fixes the generated images and the splits; sketch: fixes the validation hold-out; the
            Decathlon has fixed splits.
        workers: Decathlon and sketch: image-decoding threads for the first, packing load.
        size: stored image side; None for the source's default (mini 36, which is the only value it takes;
            Decathlon 72; sketch 224).
        crop: network input side; None for the source's default (mini 32, its only value; Decathlon 64;
            sketch 224).

    Returns:
        ``{domain: DomainData}`` in a stable, canonical domain order.

    Raises:
        FileNotFoundError: ``spec`` is in neither on-disk layout (see :func:`data_format`).
        ValueError: ``size`` or ``crop`` differs from the mini-decathlon's.
    """
    fmt = data_format(spec)
    if fmt == "mini":
        _check_mini_field("size", size, MINI_SIZE)
        _check_mini_field("crop", crop, MINI_CROP)
        from bap.data.mini import load_mini

        return load_mini(domains, seed=seed, cache_dir=cache_dir)
    if fmt == "decathlon":
        from bap.data.decathlon import load_decathlon

        return load_decathlon(
            spec,
            domains,
            size=DECATHLON_SIZE if size is None else size,
            crop=DECATHLON_CROP if crop is None else crop,
            cache_dir=cache_dir,
            workers=workers,
        )
    from bap.data.sketch import load_sketch

    return load_sketch(
        spec,
        domains,
        size=SKETCH_SIZE if size is None else size,
        crop=SKETCH_CROP if crop is None else crop,
        cache_dir=cache_dir,
        workers=workers,
        seed=seed,
    )


def available_domains(spec: str | Path) -> list[str]:
    """Domains ``spec`` provides: the fixed mini list, the Decathlon domains with annotations + images, or the
    ImageNet-to-Sketch domain folders with train/ and test/ (the last two in canonical order)."""
    fmt = data_format(spec)
    if fmt == "mini":
        return list(MINI_DOMAINS)
    if fmt == "sketch":
        return sketch_domains_on_disk(spec)
    from bap.data.decathlon import decathlon_domains_on_disk

    return decathlon_domains_on_disk(spec)
