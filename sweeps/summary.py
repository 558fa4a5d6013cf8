"""The end-of-sweep summary: one row per trial, the best trial per budget (grid mode) and the Pareto set, as a
:class:`SweepResult` (what :func:`sweeps.run` returns, ``summary.json`` on the parent run) and as text.

The Pareto set is the analysis' exact engine (:func:`analysis.pareto.pareto_mask`) on (objective up, union MACs
ratio down, union params ratio down) over the finished trials -- the same fronts the report draws.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bap import metrics as M

FINISHED, KILLED, FAILED = "FINISHED", "KILLED", "FAILED"


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


def rows_from_results(results: Any, objective: str) -> list[TrialRow]:
    """One row per trial of a Tune ``ResultGrid`` (None: no rows); status by :func:`bap.metrics.is_finished`."""
    rows = []
    for r in results if results is not None else []:
        metrics = r.metrics or {}
        status = FAILED if r.error is not None else FINISHED if M.is_finished(metrics) else KILLED
        trial_id = metrics.get("trial_id") or Path(r.path).name
        rows.append(TrialRow.from_result(trial_id, status, r.config or {}, metrics, objective))
    return rows


def pareto_set(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """Finished trials not dominated in (objective up, union MACs ratio down, union params ratio down), cheapest
    MACs first."""
    import numpy as np

    from analysis.pareto import pareto_mask

    done = [r for r in rows if r.status == FINISHED]
    if not done:
        return []
    points = np.array([[r.objective, r.union_macs_ratio, r.union_params_ratio] for r in done], dtype=float)
    mask = pareto_mask(points, ("max", "min", "min"))  # a NaN row is never on the front
    return sorted((r for r, on in zip(done, mask, strict=True) if on), key=lambda r: r.union_macs_ratio)


def best_per_budget(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """The finished trial with the best objective at each budget."""
    best: dict[float, TrialRow] = {}
    for r in rows:
        if r.status != FINISHED or not math.isfinite(r.objective):
            continue
        if r.budget not in best or r.objective > best[r.budget].objective:
            best[r.budget] = r
    return [best[b] for b in sorted(best)]


def counts(rows: Sequence[TrialRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def format_rows(rows: Sequence[TrialRow], objective: str) -> str:
    head = f"  {'trial':<16} {'budget':>6} {objective:>13} {'MACs ratio':>10} {'params ratio':>12}  sharing"
    lines = [head]
    for r in rows:
        lines.append(f"  {r.trial_id:<16} {r.budget:>6.3g} {r.objective:>13.4f} {r.union_macs_ratio:>10.3f} "
                     f"{r.union_params_ratio:>12.3f}  {r.sharing}")
    return "\n".join(lines)


@dataclass
class SweepResult:
    """What one sweep did (returned by :func:`sweeps.run`; :meth:`to_dict` is the parent run's ``summary.json``).

    Attributes:
        sweep: its name.
        complete: every trial ran to an end (else it was interrupted: ``--resume`` continues it).
        interrupted: Ctrl-C, a stop, or an error ended it early.
        rows: one per trial.
        objective: what the search maximised.
        mode: ``grid`` (a best trial per budget) or ``pareto``.
        domains: the domains trained on.
        tune_results: the Tune experiment folder.
        optuna: storage and study names.
        mlflow: tracking URI, experiment, parent run id, how to open it, logging problems and statistics.
        timings: seconds from the driver's start to each step, and the driver's CPU time (benchmarks read them).
        warm_workers: trial actors ran on workers prestarted with torch imported.
        budget_cost: what the trials' budgets bound (``params``, ``macs``, ``switches``).
        optuna_trials_failed_as_stale: RUNNING study trials closed as FAIL once every Tune trial ended.
    """

    sweep: str
    complete: bool
    interrupted: bool
    rows: list[TrialRow]
    objective: str
    mode: str
    domains: list[str]
    tune_results: str
    optuna: dict[str, Any]
    mlflow: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    warm_workers: bool = False
    budget_cost: str | None = None
    optuna_trials_failed_as_stale: int = 0

    @property
    def counts(self) -> dict[str, int]:
        return counts(self.rows)

    @property
    def best_per_budget(self) -> list[TrialRow]:
        """The best finished trial of each budget of the grid (none in pareto mode, whose budgets rarely repeat)."""
        return best_per_budget(self.rows) if self.mode == "grid" else []

    @property
    def pareto(self) -> list[TrialRow]:
        return pareto_set(self.rows)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "rows"}
        out.update(trials=len(self.rows), counts=self.counts, objective=self.objective, headline=headline_of(self),
                   best_per_budget=[dataclasses.asdict(r) for r in self.best_per_budget],
                   pareto=[dataclasses.asdict(r) for r in self.pareto])
        return out


def sweep_command(argv: Sequence[str]) -> str:
    """The driver's command line as shown to users: credentials in URIs left out."""
    from sweeps.resume import shown

    return " ".join(shown(a) if "://" in a else a for a in argv)


def _markdown_rows(rows: Sequence[TrialRow], objective: str) -> list[str]:
    lines = [f"| trial | budget | {objective} | MACs (= FLOPs) ratio | params ratio | sharing |",
             "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r.trial_id} | {r.budget:.3g} | {r.objective:.4f} | {r.union_macs_ratio:.3f} | "
              f"{r.union_params_ratio:.3f} | {r.sharing} |" for r in rows]
    return lines


def sweep_note(command: str, mode: str, budgets: Sequence[float] | None, objective: str,
               result: SweepResult | None = None) -> str:
    """The parent run's description (markdown, MLflow's ``mlflow.note.content``): how the sweep was started and,
    once it ended, its outcome -- the one-line reading, the best trial per budget, the Pareto set."""
    lines = [f"`{command}`", "", f"- mode: **{mode}**, searching for the best **{objective}**"]
    if mode == "grid" and budgets:
        lines.append("- budgets: " + ", ".join(f"{b:g}" for b in budgets))
    if result is None:
        lines.append("- running: the summary appears here when the sweep ends")
        return "\n".join(lines)
    counted = ", ".join(f"{v} {k.lower()}" for k, v in sorted(result.counts.items())) or "no trials"
    lines.append(f"- {len(result.rows)} trials ({counted})" + (" -- interrupted: rerun with --resume"
                                                                 if result.interrupted else ""))
    line = headline_of(result)
    if line:
        lines += ["", f"**In one line:** {line}"]
    if result.best_per_budget:
        lines += ["", "**Best trial per budget**", "", *_markdown_rows(result.best_per_budget, objective)]
    if result.pareto:
        lines += ["", f"**Pareto set** ({objective} up, union MACs and params down)", "",
                  *_markdown_rows(result.pareto, objective)]
    return "\n".join(lines)


def headline_of(result: SweepResult) -> str | None:
    """What the sweep shows in one line (:func:`analysis.headline.headline`), from its best trial per budget."""
    from analysis.headline import BudgetBest, headline

    if result.objective != M.MEAN_VAL_ACC:
        return None  # the line reads mean accuracies
    best = [BudgetBest(r.budget, r.objective, r.union_params_ratio, r.union_macs_ratio) for r in result.best_per_budget]
    return headline(best, len(result.domains), result.budget_cost)


def print_summary(result: SweepResult) -> None:
    """The sweep's outcome on stdout: counts, best trial per budget, the Pareto set, where everything is."""
    counted = ", ".join(f"{v} {k.lower()}" for k, v in sorted(result.counts.items())) or "no trials"
    print(f"\n[sweep] {result.sweep}: {len(result.rows)} trials ({counted})"
          f"{' -- interrupted: rerun with --resume' if result.interrupted else ''}")
    line = headline_of(result)
    if line:
        print(f"In one line:   {line}")
    if result.best_per_budget:
        print("Best trial per budget:")
        print(format_rows(result.best_per_budget, result.objective))
    front = result.pareto
    if front:
        print(f"Pareto set ({result.objective} up, union MACs and params down):")
        print(format_rows(front, result.objective))
    ml = result.mlflow
    print(f"Tune results:  {result.tune_results}")
    print(f"Optuna:        {result.optuna['storage']}  studies: {', '.join(result.optuna['studies'])}")
    print(f"MLflow:        experiment {ml['experiment']!r}, parent run {ml['parent_run_id']}")
    print(f"               {ml['ui']}")
    stats = ml["stats"]
    if any(stats.get(k) for k in ("runs_adopted", "runs_closed_on_reconcile", "orphans_adopted", "orphans_closed")):
        print(f"Resume:        {stats['runs_adopted']} trial runs re-adopted, {stats['runs_closed_on_reconcile']} "
              f"closed from Tune's saved state, {stats['orphans_adopted']} runs of unrecorded trials taken over, "
              f"{stats['orphans_closed']} closed")
    if ml["logging_errors"]:
        print(f"MLflow logging problems ({len(ml['logging_errors'])}): {ml['logging_errors'][0]}")
