"""The fault-injection spec (tests): parsed by the driver before Ray starts, so this module imports nothing heavy.

See :mod:`sweeps.trainable` for what ``BAP_SWEEP_INJECT_FAULT`` does.
"""

from __future__ import annotations

from typing import Any

FAULT_ENV = "BAP_SWEEP_INJECT_FAULT"


def parse_fault(text: str | None) -> dict[str, Any] | None:
    """``"epoch=2,count=1,mode=raise"`` -> ``{"epoch": 2, "count": 1, "mode": "raise"}``; None if unset."""
    if not text:
        return None
    out: dict[str, Any] = {"mode": "raise", "count": None}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key == "epoch":
            out["epoch"] = int(value)
        elif key == "count":
            out["count"] = int(value)
        elif key == "mode":
            if value not in ("raise", "exit"):
                raise ValueError(f"{FAULT_ENV}: mode must be raise or exit, got {value!r}")
            out["mode"] = value
        else:
            raise ValueError(f"{FAULT_ENV}: unknown key {key!r} (epoch, count, mode)")
    if "epoch" not in out:
        raise ValueError(f"{FAULT_ENV} needs epoch=N")
    return out
