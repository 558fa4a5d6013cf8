"""A minimal training entry point for the preparation tests (``entrypoint: tests.sweeps.prepare_entry``): its
``prepare`` fails, or returns small data and backbone bytes, as the fixed training values ask; no trial may start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.sweeps.entry import TrainConfig, available_domains  # noqa: F401  (this entry point's)


def prepare(train: dict[str, Any], keep_data: bool) -> dict[str, Any]:
    if train.get("fail"):
        raise ValueError("corrupt image set\nsecond line")
    data = {"synthetic": list(range(int(train.get("n", 3))))}
    return {"data": data if keep_data else None, "domains": ["synthetic"], "pretrained": None,
            "backbone_bytes": b"weights" if train.get("backbone") else None}


def train(config: TrainConfig, out_dir: str | Path, **kwargs: Any) -> dict:
    raise AssertionError("no trial may start when the data could not be prepared")
