"""Look at the data: one example per class per domain, as arrays (data step) and as a PNG grid (renderer)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bap.data.domain import DomainData

MAX_COLUMNS = 12


@dataclass(frozen=True)
class ClassExamples:
    """The first image of each of the first ``MAX_COLUMNS`` classes of one domain split."""

    domain: str
    class_names: tuple[str, ...]
    images: tuple[np.ndarray, ...]  # uint8 (S, S, 3) each


def class_examples(data: DomainData, split: str = "train", max_columns: int = MAX_COLUMNS) -> ClassExamples:
    """One image per class (classes absent from the split are left out), at most ``max_columns`` classes."""
    part = data.split(split)
    names, images = [], []
    for label in range(data.num_classes):
        if len(names) == max_columns:
            break
        hits = (part.labels == label).nonzero()
        if len(hits):
            names.append(data.class_names[label])
            images.append(part.images[int(hits[0])].permute(1, 2, 0).numpy())
    return ClassExamples(data.name, tuple(names), tuple(images))


def render_grid(rows: list[ClassExamples], out: str | Path, cell_inches: float = 1.0) -> Path:
    """Draw one row per domain (row label: domain, column title: class name) into a PNG; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max((len(r.images) for r in rows), default=1)
    fig, axes = plt.subplots(
        len(rows),
        columns,
        figsize=(cell_inches * columns + 1.0, cell_inches * 1.25 * len(rows)),
        squeeze=False,
    )
    for row, axis_row in zip(rows, axes):
        for col, ax in enumerate(axis_row):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(row.images):
                ax.set_axis_off()
                continue
            ax.imshow(row.images[col], interpolation="nearest")
            ax.set_title(row.class_names[col], fontsize=7)
        axis_row[0].set_ylabel(row.domain, fontsize=10, rotation=0, ha="right", va="center")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def show(datasets: Mapping[str, DomainData], out: str | Path, split: str = "train") -> Path:
    """Grid of one example per class for every domain of ``datasets``."""
    return render_grid([class_examples(d, split) for d in datasets.values()], out)
