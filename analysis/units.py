"""Display units of the report: params in M, MACs in M or G (whichever reads better), accuracy in %, measured
latency in ms (:data:`MILLISECONDS`: the table's latency metrics already are milliseconds per call of a batch).

Toy models (the offline smoke sweep: a few thousand parameters) get params in k rather than 0.00x M.

Counts in the trial table are plain numbers (parameters; MACs per image, 1 MAC = 2 FLOPs); ratios are in single-domain
ResNet-26 backbones with their head. These helpers only format; they never change the data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["GIGA", "KILO", "MEGA", "MILLISECONDS", "Unit", "format_count", "format_ms", "format_percent", "format_ratio",
           "macs_unit", "params_unit"]


@dataclass(frozen=True)
class Unit:
    """A display unit: ``value / scale`` is shown followed by ``symbol``.

    Attributes:
        symbol: ``"M"`` or ``"G"``.
        scale: ``1e6`` or ``1e9``.
    """

    symbol: str
    scale: float

    def __call__(self, value: float) -> float:
        return value / self.scale


KILO = Unit("k", 1e3)
MEGA = Unit("M", 1e6)
GIGA = Unit("G", 1e9)
MILLISECONDS = Unit("ms", 1.0)  # latency metrics are logged in ms: shown as they are


def _largest(values: Iterable[float]) -> float:
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return max(finite, default=0.0)


def params_unit(values: Iterable[float] = ()) -> Unit:
    """Parameters in M (the field's habit); in k only for toy models (largest value under 0.1 M, e.g. smoke runs)."""
    values = list(values)
    return KILO if values and _largest(values) < 1e5 else MEGA


def macs_unit(values: Iterable[float]) -> Unit:
    """MACs in G when the largest value is at least 1 G, else in M."""
    return GIGA if _largest(values) >= 1e9 else MEGA


def format_count(value: float, unit: Unit) -> str:
    """``format_count(1.234e6, MEGA) == "1.23 M"``; 3 significant digits; ``"-"`` for NaN."""
    if value is None or not math.isfinite(value):
        return "-"
    scaled = unit(value)
    digits = max(0, 2 - int(math.floor(math.log10(abs(scaled))))) if scaled else 0
    return f"{scaled:,.{digits}f} {unit.symbol}"


def format_percent(fraction: float, digits: int = 1) -> str:
    """An accuracy fraction as percent: ``0.8123 -> "81.2 %"``; ``"-"`` for NaN."""
    if fraction is None or not math.isfinite(fraction):
        return "-"
    return f"{100 * fraction:.{digits}f} %"


def format_ratio(ratio: float) -> str:
    """A cost ratio in single-domain backbones: ``0.5123 -> "0.512x"``; ``"-"`` for NaN."""
    if ratio is None or not math.isfinite(ratio):
        return "-"
    return f"{ratio:.3f}x"


def format_ms(ms: float) -> str:
    """Milliseconds with 3 significant digits: ``8.6047 -> "8.60 ms"``, ``554.8 -> "555 ms"``; ``"-"`` for NaN."""
    return format_count(ms, MILLISECONDS)
