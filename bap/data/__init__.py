"""Multi-domain image data as packed uint8 tensors: the Visual Decathlon on disk, or the offline mini version.

``load_data(spec)`` returns ``{domain: DomainData}``; ``prepare_batch`` turns a uint8 batch into the
normalised ``crop`` x ``crop`` float input on whatever device the batch is on. See ``decathlon`` for the input
recipe (UniversalRepresentations-style "crop everywhere", paper.md §6) and ``mini`` for the offline domains.
"""

from bap.data.decathlon import DECATHLON_DOMAINS, load_decathlon
from bap.data.domain import DomainData, DomainSplit
from bap.data.load import available_domains, load_data
from bap.data.mini import MINI_DOMAINS, load_mini
from bap.data.transforms import prepare_batch

__all__ = [
    "DECATHLON_DOMAINS",
    "MINI_DOMAINS",
    "DomainData",
    "DomainSplit",
    "available_domains",
    "load_data",
    "load_decathlon",
    "load_mini",
    "prepare_batch",
]
