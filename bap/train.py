"""The training entry point the CLI and every sweep trial call: ``TrainConfig``, ``train`` and the data's domains
(it satisfies :class:`bap.entrypoint.TrainingEntryPoint`).

Light to import -- torch loads when a run starts -- so the sweep driver validates every configuration without
importing torch. The training loop itself, and what a run does, is :mod:`bap.training`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bap.config import TrainConfig
from bap.data.load import available_domains
from bap.entrypoint import Report

if TYPE_CHECKING:
    from bap.data import DomainData

__all__ = ["Report", "TrainConfig", "available_domains", "latest_checkpoint", "train"]


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    data: Mapping[str, DomainData] | None = None,
    report: Report | None = None,
    resume_from: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run one budget-aware training run; returns what it writes to ``out_dir/metrics.json``.

    Args:
        config: the run's configuration (validated).
        out_dir: where checkpoints, ``metrics.json`` and the pruned model go.
        data: preloaded domains (a sweep shares them); loaded from ``config.data`` if None.
        report: called after every epoch with the flat metrics (names in :mod:`bap.metrics`) and the checkpoint
            directory; the last call carries the final, budget-enforced and pruned numbers.
        resume_from: a checkpoint directory from an earlier ``report`` call: continue after its epoch.
        progress: show a progress bar per epoch.
    """
    from bap.training import train as run

    return run(config, out_dir, data=data, report=report, resume_from=resume_from, progress=progress)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest checkpoint directory under ``out_dir``, if any."""
    from bap.training import latest_checkpoint as newest

    return newest(out_dir)
