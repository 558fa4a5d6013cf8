"""What a sweep needs from a training entry point, written down once: :class:`TrainingEntryPoint`.

A sweep's ``entrypoint`` names a module (``bap.train`` by default; tests and benchmarks swap in their own) that every
trial imports. :mod:`bap.train` satisfies the protocol, as does ``tests/sweeps/entry.py`` with a ``train`` added.
:func:`load_entrypoint` imports one and says, before anything starts, what it lacks.

Torch-free: the driver validates its configuration through it without importing torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

Report = Callable[[dict[str, float], Path], None]  # (flat metrics of an epoch, its checkpoint directory)


class ConfigLike(Protocol):
    """A run's configuration: built from plain values (unknown keys and bad values raise ValueError), and back."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ConfigLike: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class TrainingEntryPoint(Protocol):
    """A module the sweep runs each trial through.

    Attributes:
        TrainConfig: the run's configuration class (:class:`ConfigLike`); the sweep validates every fixed value and
            every search-space extreme through ``TrainConfig.from_dict`` before launching.
    """

    TrainConfig: type[ConfigLike]

    def train(self, config: Any, out_dir: str | Path, *, data: Any = None, report: Report | None = None,
              resume_from: str | Path | None = None) -> Mapping[str, Any]:
        """One run: call ``report`` after every epoch with the flat metrics of :mod:`bap.metrics` -- at least the
        sweep's objective and its budget-feasible twin (``mean_val_acc`` and ``feasible_mean_val_acc``, or ``score``
        and ``feasible_score``), what the search and early stopping rank; the last call carries the final metrics,
        with ``pruned_agreement`` -- write ``metrics.json`` to ``out_dir``; return what it wrote."""
        ...

    def available_domains(self, spec: str | None) -> Sequence[str]:
        """The domains the data ``spec`` holds (without loading images)."""
        ...


@runtime_checkable
class PreparingEntryPoint(TrainingEntryPoint, Protocol):
    """An entry point that prepares the sweep's data itself, once, before any trial (else :mod:`sweeps.prepare`
    loads it with :mod:`bap.data` and pretrains the backbone)."""

    def prepare(self, train: dict[str, Any], keep_data: bool) -> dict[str, Any]:
        """``{"data": domains or None, "domains": [...], "pretrained": path or None, "backbone_bytes": ...}``."""
        ...


REQUIRED = ("TrainConfig", "train", "available_domains")


def load_entrypoint(name: str) -> TrainingEntryPoint:
    """Import the entry point module ``name``; ValueError naming what it lacks if it is not one.

    Raises:
        ModuleNotFoundError: no such module.
        ValueError: the module lacks one of ``TrainConfig``, ``train``, ``available_domains``.
    """
    module: ModuleType = importlib.import_module(name)
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise ValueError(f"training entry point {name!r} lacks {', '.join(missing)}; an entry point provides "
                         f"{', '.join(REQUIRED)} (and optionally prepare), as bap.train does")
    return module  # type: ignore[return-value]


def has_prepare(entry: TrainingEntryPoint) -> bool:
    return callable(getattr(entry, "prepare", None))
