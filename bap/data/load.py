"""One entry point for both data sources: ``"mini"`` or a path to a Visual Decathlon root."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bap.data.domain import DomainData

MINI_SPEC = "mini"
# Here, not in bap.data.mini, so that asking which domains there are (a sweep's validation) does not import torch.
MINI_DOMAINS: tuple[str, ...] = ("digits", "faces", "textures", "glyphs", "signs")


def load_data(
    spec: str,
    domains: Sequence[str] | None = None,
    *,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    workers: int | None = None,
) -> dict[str, DomainData]:
    """Load the mini-decathlon (``spec == "mini"``) or the Visual Decathlon found at path ``spec``.

    Args:
        spec: ``"mini"``, or the ``decathlon-1.0`` folder (or its parent).
        domains: domain names; None for all (mini: ``MINI_DOMAINS``; Decathlon: every domain on disk).
        cache_dir: where packed tensors are cached; each loader has its own default.
        seed: mini only: fixes the generated images and the splits (the Decathlon has fixed splits).
        workers: Decathlon only: JPEG-decoding threads for the first, packing load.

    Returns:
        ``{domain: DomainData}`` in a stable, canonical domain order.
    """
    if str(spec) == MINI_SPEC:
        from bap.data.mini import load_mini

        return load_mini(domains, seed=seed, cache_dir=cache_dir)
    from bap.data.decathlon import load_decathlon

    return load_decathlon(spec, domains, cache_dir=cache_dir, workers=workers)


def available_domains(spec: str) -> list[str]:
    """Domains ``spec`` provides: the fixed mini list, or the Decathlon domains with annotations + images."""
    if str(spec) == MINI_SPEC:
        return list(MINI_DOMAINS)
    from bap.data.decathlon import decathlon_domains_on_disk

    return decathlon_domains_on_disk(spec)
