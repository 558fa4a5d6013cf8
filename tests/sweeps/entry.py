"""What the sweep's training entry point needs besides ``prepare`` and ``train``, for test modules that stand in as
one (``entrypoint: tests.test_...``). Imports neither torch nor Ray: a test checks what a trial worker imported."""

from __future__ import annotations

from typing import Any


class TrainConfig:
    """Holds whatever the sweep passes (the searched fields included)."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values = dict(values or {})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        return cls(values)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)


def available_domains(spec: str | None) -> list[str]:
    return ["synthetic"]
