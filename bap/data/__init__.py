"""Multi-domain image data as packed uint8 tensors: the Visual Decathlon or ImageNet-to-Sketch on disk, or the
offline mini version.

``load_data(spec)`` returns ``{domain: DomainData}``; ``prepare_batch`` turns a uint8 batch into the
normalised ``crop`` x ``crop`` float input on whatever device the batch is on. See ``decathlon`` for the input
recipe (UniversalRepresentations-style "crop everywhere", paper.md §6), ``sketch`` for the ImageNet-to-Sketch
benchmark (Piggyback's ImageFolder layout) and ``mini`` for the offline domains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bap._lazy import lazy_exports

# Loaded on first use: `bap.data.load.available_domains` ("which domains are there?") must not import torch.
_EXPORTS = {
    "DECATHLON_DOMAINS": "bap.data.decathlon", "load_decathlon": "bap.data.decathlon",
    "DomainData": "bap.data.domain", "DomainSplit": "bap.data.domain",
    "available_domains": "bap.data.load", "data_format": "bap.data.load", "load_data": "bap.data.load",
    "MINI_DOMAINS": "bap.data.load",
    "load_mini": "bap.data.mini",
    "SKETCH_DOMAINS": "bap.data.sketch_layout", "load_sketch": "bap.data.sketch",
    "prepare_batch": "bap.data.transforms",
}

__all__ = [
    "DECATHLON_DOMAINS",
    "MINI_DOMAINS",
    "SKETCH_DOMAINS",
    "DomainData",
    "DomainSplit",
    "available_domains",
    "data_format",
    "load_data",
    "load_decathlon",
    "load_mini",
    "load_sketch",
    "prepare_batch",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from bap.data.decathlon import DECATHLON_DOMAINS, load_decathlon
    from bap.data.domain import DomainData, DomainSplit
    from bap.data.load import MINI_DOMAINS, available_domains, data_format, load_data
    from bap.data.mini import load_mini
    from bap.data.sketch import load_sketch
    from bap.data.sketch_layout import SKETCH_DOMAINS
    from bap.data.transforms import prepare_batch
