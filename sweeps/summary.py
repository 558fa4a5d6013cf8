"""The end-of-sweep summary: best trial per budget (grid mode) or the Pareto set (pareto mode), as plain rows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bap import metrics as M


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    status: str  # FINISHED / KILLED (stopped early) / FAILED
    budget: float
    objective: float
    union_macs_ratio: float
    union_params_ratio: float
    epoch: float
    sharing: str

    @classmethod
    def from_result(cls, trial_id: str, status: str, config: Mapping[str, Any], metrics: Mapping[str, Any],
                    objective: str) -> TrialRow:
        def num(key: str) -> float:
            v = metrics.get(key)
            return float(v) if isinstance(v, int | float) else math.nan

        return cls(trial_id, status, float(config.get(M.BUDGET, metrics.get(M.BUDGET, math.nan))), num(objective),
                   num(M.UNION_MACS_RATIO), num(M.UNION_PARAMS_RATIO), num(M.EPOCH),
                   str(config.get("sharing", "")))


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_set(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """Finished trials not dominated in (objective up, union MACs ratio down, union params ratio down)."""
    done = [r for r in rows if r.status == "FINISHED" and all(
        math.isfinite(v) for v in (r.objective, r.union_macs_ratio, r.union_params_ratio))]
    keys = {r.trial_id: (r.objective, -r.union_macs_ratio, -r.union_params_ratio) for r in done}
    front = [r for r in done if not any(_dominates(keys[o.trial_id], keys[r.trial_id]) for o in done if o is not r)]
    return sorted(front, key=lambda r: r.union_macs_ratio)


def best_per_budget(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """The finished trial with the best objective at each budget."""
    best: dict[float, TrialRow] = {}
    for r in rows:
        if r.status != "FINISHED" or not math.isfinite(r.objective):
            continue
        if r.budget not in best or r.objective > best[r.budget].objective:
            best[r.budget] = r
    return [best[b] for b in sorted(best)]


def format_rows(rows: Sequence[TrialRow], objective: str) -> str:
    head = f"  {'trial':<16} {'budget':>6} {objective:>13} {'MACs ratio':>10} {'params ratio':>12}  sharing"
    lines = [head]
    for r in rows:
        lines.append(f"  {r.trial_id:<16} {r.budget:>6.3g} {r.objective:>13.4f} {r.union_macs_ratio:>10.3f} "
                     f"{r.union_params_ratio:>12.3f}  {r.sharing}")
    return "\n".join(lines)


def counts(rows: Sequence[TrialRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.status] = out.get(r.status, 0) + 1
    return out
