"""Optuna search spaces over ``TrainConfig`` fields, written as define-by-run samplers.

A space is plain data (from the preset YAML) so it can be printed, validated and overridden::

    space:
      sharing: {choice: [none, union, intersection, jaccard]}
      sharing_weight: {loguniform: [0.001, 10.0]}     # only sampled when sharing != none
      sharing_learnable: {choice: [false, true]}      # ditto: a fixed or a learnable sharing weight
      lr: {loguniform: [0.001, 0.3]}
      epochs: 8                                       # a plain value fixes the field

:class:`SpaceSampler` turns it into the define-by-run callable ``OptunaSearch`` takes (a picklable object, because
Tune pickles the searcher into its experiment state). The budget is either fixed per study (grid mode: one study per
budget) or searched over ``budget_range`` (pareto mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bap.metrics import BUDGET, OPTUNA_STUDY_KEY, OPTUNA_TRIAL_KEY, TRIAL_META_KEYS
from sweeps.config import ConfigError

KINDS = ("choice", "uniform", "loguniform", "int", "logint")

# Parameters that only mean something when another one has a given value: name -> (parent, active(value)).
CONDITIONS: dict[str, tuple[str, Any]] = {
    "sharing_weight": ("sharing", lambda v: v != "none"),
    "sharing_learnable": ("sharing", lambda v: v != "none"),
}


@dataclass(frozen=True)
class Param:
    """One searched field: ``kind`` in KINDS; ``values`` for choice, ``low``/``high`` otherwise."""

    name: str
    kind: str
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0

    def suggest(self, trial: Any) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind in ("uniform", "loguniform"):
            return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "loguniform")
        return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.kind == "logint")

    def contains(self, value: Any) -> bool:
        """True if ``value`` is one this parameter can take."""
        if self.kind == "choice":
            return value in self.values
        return isinstance(value, int | float) and not isinstance(value, bool) and self.low <= value <= self.high

    def extremes(self) -> list[Any]:
        """Values that together exercise every bound (used to validate the space against TrainConfig)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind in ("int", "logint"):
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


def parse_space(spec: Mapping[str, Any]) -> tuple[dict[str, Param], dict[str, Any]]:
    """Split a space spec into searched parameters and fixed values. Raises ConfigError on a malformed entry."""
    params: dict[str, Param] = {}
    fixed: dict[str, Any] = {}
    for name, entry in spec.items():
        if name == BUDGET:
            raise ConfigError("the budget is not part of space: use --budgets (grid) or budget_range (pareto)")
        if not isinstance(entry, Mapping):
            fixed[name] = entry
            continue
        if len(entry) != 1 or next(iter(entry)) not in KINDS:
            raise ConfigError(
                f"space entry {name!r} must be one of {{{', '.join(k + ': ...' for k in KINDS)}}} or a plain value, "
                f"got {dict(entry)!r}"
            )
        kind, arg = next(iter(entry.items()))
        if kind == "choice":
            if not isinstance(arg, list | tuple) or not arg:
                raise ConfigError(f"space entry {name!r}: choice needs a non-empty list, got {arg!r}")
            params[name] = Param(name, kind, values=tuple(arg))
            continue
        if not isinstance(arg, list | tuple) or len(arg) != 2:
            raise ConfigError(f"space entry {name!r}: {kind} needs [low, high], got {arg!r}")
        try:
            low, high = float(arg[0]), float(arg[1])
        except (TypeError, ValueError):
            raise ConfigError(f"space entry {name!r}: {kind} bounds must be numbers, got {arg!r}") from None
        if not low < high:
            raise ConfigError(f"space entry {name!r}: {kind} needs low < high, got {arg!r}")
        if kind in ("loguniform", "logint") and low <= 0:
            raise ConfigError(f"space entry {name!r}: {kind} needs low > 0, got {arg!r}")
        params[name] = Param(name, kind, low=low, high=high)
    return params, fixed


class SpaceSampler:
    """Define-by-run search space for ``OptunaSearch``: ``sampler(trial) -> constants``.

    Args:
        spec: the space mapping (see module docstring).
        budget: grid mode: the study's fixed budget.
        budget_range: pareto mode: ``(low, high)`` searched for the budget.
        study_name: copied into every trial's config (``optuna_study``) so a trial names its study.
        defaults: TrainConfig defaults, used to evaluate a condition whose parent is not searched.
    """

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        budget: float | None = None,
        budget_range: tuple[float, float] | None = None,
        study_name: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if (budget is None) == (budget_range is None):
            raise ValueError("give exactly one of budget (grid mode) and budget_range (pareto mode)")
        self.spec = dict(spec)
        self.params, self.fixed = parse_space(spec)
        self.budget = budget
        self.budget_range = tuple(budget_range) if budget_range is not None else None
        self.study_name = study_name
        self.defaults = dict(defaults or {})

    def _active(self, name: str, chosen: Mapping[str, Any]) -> bool:
        if name not in CONDITIONS:
            return True
        parent, active = CONDITIONS[name]
        if parent in chosen:
            return bool(active(chosen[parent]))
        if parent in self.defaults:
            return bool(active(self.defaults[parent]))
        return True

    def first_trial(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The searched values of the documented defaults (``defaults``: the run's ``TrainConfig`` values), for the
        first trial of a study: a small sweep then starts from the configuration the project ships and searches
        around it, rather than from a random draw. Values the space cannot take are left to the sampler."""
        chosen: dict[str, Any] = {}
        if self.budget_range is not None and BUDGET in defaults:
            lo, hi = self.budget_range
            if lo < hi and lo <= defaults[BUDGET] <= hi:
                chosen[BUDGET] = defaults[BUDGET]
        for param in sorted(self.params.values(), key=lambda p: p.name in CONDITIONS):
            if param.name in defaults and param.contains(defaults[param.name]) and self._active(param.name, {
                    **defaults, **chosen}):
                chosen[param.name] = defaults[param.name]
        return chosen

    def __call__(self, trial: Any) -> dict[str, Any]:
        chosen: dict[str, Any] = dict(self.fixed)
        if self.budget_range is not None:
            lo, hi = self.budget_range
            chosen[BUDGET] = lo if lo == hi else trial.suggest_float(BUDGET, lo, hi)
        # Unconditional parameters first, so that every condition's parent is known when its child is reached.
        ordered = sorted(self.params.values(), key=lambda p: p.name in CONDITIONS)
        for param in ordered:
            if self._active(param.name, chosen):
                chosen[param.name] = param.suggest(trial)
        constants: dict[str, Any] = dict(self.fixed)
        if self.budget is not None:
            constants[BUDGET] = self.budget
        elif self.budget_range is not None and self.budget_range[0] == self.budget_range[1]:
            constants[BUDGET] = self.budget_range[0]
        constants[OPTUNA_TRIAL_KEY] = int(trial.number)
        if self.study_name:
            constants[OPTUNA_STUDY_KEY] = self.study_name
        return constants


def split_trial_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Tune trial config -> (TrainConfig overrides, sweep meta such as the Optuna trial number)."""
    train = {k: v for k, v in config.items() if k not in TRIAL_META_KEYS}
    meta = {k: config[k] for k in TRIAL_META_KEYS if k in config}
    return train, meta


def validation_configs(spec: Mapping[str, Any], budgets: list[float]) -> list[dict[str, Any]]:
    """One override dict per extreme value of every parameter and per budget, for validating against TrainConfig."""
    params, fixed = parse_space(spec)
    out: list[dict[str, Any]] = [dict(fixed, **{BUDGET: b}) for b in budgets]
    for param in params.values():
        for value in param.extremes():
            out.append(dict(fixed, **{param.name: value}))
    return out
