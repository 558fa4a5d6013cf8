"""Budget-fair ASHA: asynchronous successive halving where a trial only competes with trials that cost no more.

Plain ASHA ranks every trial on one number. In a sweep over budgets that number is accuracy, and a trial with budget
0.25 is nearly always less accurate than one with budget 1.0 -- so ASHA stops the cheap trials first and the Pareto
front of accuracy versus cost loses its cheap end. At each rung a trial is therefore compared only with its *peers*,
and stops if its accuracy is below their ``1 - 1/reduction_factor`` quantile (ASHA's cutoff). Who the peers are:

* ``peers="same_budget"`` -- one ASHA bracket per budget. For a budget grid (``--mode grid``: one study per
  budget), where every budget must end with its best trial: a trial at budget 0.5 is never stopped because a 0.25
  trial was ahead after one epoch.
* ``peers="cheaper_or_equal"`` -- the recorded trials whose budget is *at most its own*, the only ones that can
  dominate it in (accuracy up, cost down). For budgets searched on a continuum (``--mode pareto``), where no two
  trials share a budget; the idea follows Syne Tune's multi-objective ASHA (Schmucker et al., "Multi-objective
  asynchronous successive halving", 2021): an expensive trial that a cheaper one out-performs is dominated, and may
  stop.

Either way a trial that no peer beats always continues -- the cheapest trials are never stopped for being less
accurate than expensive ones -- and with a single budget the rule is exactly ASHA.

The budget is the trial's configured budget (``config["budget"]``): it is what the final pruned network's cost is
held to, while the per-epoch cost figures move during training. The final epoch is never judged (rungs sit strictly
below ``max_t``), so a trial that reached its last report always finishes, pruning and writing its model.

The rung records are small plain data; :class:`SchedulerStateCallback` stores them with Tune's experiment state so a
resumed sweep keeps its early-stopping history (Tune itself does not save scheduler state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from ray.tune import Callback
from ray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

from bap.metrics import BUDGET, EPOCH

Point = tuple[float, float]  # (metric oriented so that larger is better, budget)
Peers = Literal["same_budget", "cheaper_or_equal"]
PEERS: tuple[Peers, ...] = ("same_budget", "cheaper_or_equal")


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as good as ``b`` in both objectives (metric up, budget down) and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def rung_decision(
    recorded: Mapping[str, Point], new: Point, reduction_factor: float, peers: Peers = "cheaper_or_equal"
) -> str:
    """CONTINUE or STOP for a trial reaching a rung that already holds ``recorded`` (trial id -> point).

    The new trial's peers are the recorded trials with its budget (``same_budget``) or a budget at most its own
    (``cheaper_or_equal``); it stops if its metric is below the ``1 - 1/reduction_factor`` quantile of theirs
    (ASHA's cutoff). No peers, no stop.
    """
    def is_peer(budget: float) -> bool:
        return math.isclose(budget, new[1]) if peers == "same_budget" else budget <= new[1]

    scores = [score for score, budget in recorded.values() if is_peer(budget) and not math.isnan(score)]
    if not scores:
        return TrialScheduler.CONTINUE
    cutoff = float(np.percentile(scores, (1 - 1 / reduction_factor) * 100))
    return TrialScheduler.STOP if new[0] < cutoff else TrialScheduler.CONTINUE


def rung_milestones(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """Rung epochs ``grace * rf**k`` strictly below ``max_t`` (the last epoch is never judged), ascending."""
    out: list[int] = []
    t = float(grace_period)
    while t < max_t:
        m = int(math.ceil(t))
        if not out or m > out[-1]:
            out.append(m)
        t *= reduction_factor
    return out


class BudgetFairASHA(FIFOScheduler):
    """Asynchronous successive halving where a trial is ranked only against its peers by budget.

    Args:
        metric: the validation metric ranked at each rung (e.g. ``mean_val_acc``).
        mode: ``max`` or ``min`` for ``metric``.
        max_t: the number of epochs a trial runs; rungs sit strictly below it.
        grace_period: first rung (epochs).
        reduction_factor: keep the top ``1/reduction_factor`` of a trial's peers at each rung.
        time_attr: monotone progress counter in the results (the epoch).
        budget_key: trial config key holding the budget (falls back to the result's ``budget``).
        peers: whom a trial is ranked against at a rung: ``same_budget`` (one bracket per budget, for a budget
            grid) or ``cheaper_or_equal`` (trials that can dominate it, for budgets searched on a continuum).
    """

    def __init__(
        self,
        metric: str,
        mode: str = "max",
        *,
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 2.0,
        time_attr: str = EPOCH,
        budget_key: str = BUDGET,
        peers: Peers = "cheaper_or_equal",
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if peers not in PEERS:
            raise ValueError(f"peers must be one of {', '.join(PEERS)}, got {peers!r}")
        if grace_period < 1 or reduction_factor <= 1 or max_t < 1:
            raise ValueError("need grace_period >= 1, reduction_factor > 1 and max_t >= 1")
        super().__init__()
        self._metric = metric
        self._mode = mode
        self._sign = 1.0 if mode == "max" else -1.0
        self._time_attr = time_attr
        self._budget_key = budget_key
        self._peers: Peers = peers
        self._rf = float(reduction_factor)
        self._max_t = int(max_t)
        self._milestones = rung_milestones(grace_period, reduction_factor, max_t)
        self._rungs: dict[int, dict[str, Point]] = {m: {} for m in self._milestones}
        self._budgets: dict[str, float] = {}
        self._stopped: dict[str, int] = {}  # trial id -> epoch it was stopped at

    # --- Tune API ---------------------------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        # Metric and mode are fixed at construction: the search algorithm may optimise something else
        # (several objectives in pareto mode), which must not overwrite what the rungs rank on.
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        budget = (trial.config or {}).get(self._budget_key)
        if budget is not None:
            self._budgets[trial.trial_id] = float(budget)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self.judge(trial.trial_id, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if result:
            self.judge(trial.trial_id, result, record_only=True)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        pass

    def debug_string(self) -> str:
        parts = [f"{m}: {len(r)} recorded" for m, r in self._rungs.items()]
        rungs = ", ".join(parts) or "none"
        return f"BudgetFairASHA({self._metric}, peers={self._peers}, stopped={len(self._stopped)}; rungs {rungs})"

    # --- The rule, usable without Tune ---------------------------------------------------------------------------
    @property
    def metric(self) -> str:
        return self._metric

    @property
    def peers(self) -> Peers:
        return self._peers

    @property
    def milestones(self) -> list[int]:
        return list(self._milestones)

    @property
    def stopped(self) -> dict[str, int]:
        """Trial id -> epoch of every trial this scheduler stopped early."""
        return dict(self._stopped)

    def judge(self, trial_id: str, result: Mapping[str, Any], *, record_only: bool = False) -> str:
        """Record ``result`` at the highest rung it reached and not yet recorded there; STOP or CONTINUE."""
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        budget = self._budgets.get(trial_id, result.get(BUDGET))
        if budget is None:
            return TrialScheduler.CONTINUE
        t = float(result[self._time_attr])
        value = float(result[self._metric])
        score = self._sign * value if math.isfinite(value) else -math.inf
        point: Point = (score, float(budget))
        if t >= self._max_t:
            record_only = True  # the final report carries the pruned model: never cut it off
        for milestone in reversed(self._milestones):
            if t < milestone:
                continue
            rung = self._rungs[milestone]
            if trial_id in rung:
                return TrialScheduler.CONTINUE
            action = TrialScheduler.CONTINUE if record_only else rung_decision(rung, point, self._rf, self._peers)
            rung[trial_id] = point
            if action == TrialScheduler.STOP:
                self._stopped[trial_id] = int(t)
            return action
        return TrialScheduler.CONTINUE

    def get_state(self) -> dict[str, Any]:
        return {
            "rungs": {str(m): {k: list(v) for k, v in r.items()} for m, r in self._rungs.items()},
            "budgets": dict(self._budgets),
            "stopped": dict(self._stopped),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        for m, recorded in state.get("rungs", {}).items():
            rung = self._rungs.setdefault(int(m), {})
            rung.update({k: (float(v[0]), float(v[1])) for k, v in recorded.items()})
        self._budgets.update(state.get("budgets", {}))
        self._stopped.update(state.get("stopped", {}))


class SchedulerStateCallback(Callback):
    """Carries a :class:`BudgetFairASHA`'s rungs in Tune's experiment state, so ``--resume`` keeps them."""

    def __init__(self, scheduler: BudgetFairASHA) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict | None:
        return {"budget_fair_asha": self.scheduler.get_state()}

    def set_state(self, state: dict) -> None:
        if "budget_fair_asha" in state:
            self.scheduler.set_state(state["budget_fair_asha"])
