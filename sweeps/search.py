"""Optuna as Tune's search algorithm: pinned samplers, persistent studies, and a searcher that survives restores.

* **Storage**: a journal file by default (``JournalStorage(JournalFileBackend(path))``: safe for parallel writers,
  needs no server, NFS-friendly) or any RDB URL (``postgresql://...``) for clusters. The study is named after the
  sweep, so ``optuna-dashboard`` / ``optuna.load_study`` open it directly.
* **Samplers** are pinned (Optuna 5 changed the multi-objective default from NSGA-II to TPE).
* **Modes**: ``grid`` runs one single-objective study per budget (``<sweep>/budget=0.25``, ...) behind one Tune
  searcher (:class:`PerBudgetSearch`, round-robin over budgets); ``pareto`` runs one multi-objective study
  (objective up, union MACs ratio down, union params ratio down).
* **Restore safety** (:class:`BapOptunaSearch`): Tune restores the searcher from a snapshot that can be older than the
  study. A trial whose Optuna twin already finished is never reported to again (Optuna would raise
  ``UpdateFinishedTrialError``); Optuna trials a dead driver asked for but Tune never recorded are adopted by the next
  new Tune trials (same parameters; the config's ``resume_trial`` names the dead trial, whose checkpoints and MLflow
  run the new one continues), so no study trial stays RUNNING; :func:`fail_stale_trials` closes any left.
  Trials stopped early by ASHA are told PRUNED, so the Pareto set holds only trials that finished and pruned.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.searcher import Searcher

from bap.metrics import EPOCH, PRUNED_AGREEMENT, UNION_MACS_RATIO, UNION_PARAMS_RATIO
from sweeps.space import RESUME_TRIAL_KEY

logger = logging.getLogger(__name__)

TUNE_TRIAL_ATTR = "tune_trial_id"  # Optuna user attribute: the Ray Tune trial id that ran this Optuna trial
PREVIOUS_TUNE_TRIAL_ATTR = "previous_tune_trial_id"  # set on adoption: the dead driver's Tune trial id
FINAL_KEY = PRUNED_AGREEMENT  # present only in a trial's final (pruned) report


def objectives(objective: str, multi_objective: bool) -> tuple[list[str], list[str]]:
    """(metrics, modes) the study optimises."""
    if multi_objective:
        return [objective, UNION_MACS_RATIO, UNION_PARAMS_RATIO], ["max", "min", "min"]
    return [objective], ["max"]


def make_sampler(name: str, seed: int, multi_objective: bool) -> optuna.samplers.BaseSampler:
    """The sampler, always explicit: ``tpe`` (multivariate, grouped, constant liar for parallel trials), ``nsga2``
    or ``random``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=5
            )
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; allowed values: tpe, nsga2, random")


def make_storage(spec: str) -> optuna.storages.BaseStorage:
    """A journal file (default, any path) or an RDB URL (``sqlite:///``, ``postgresql://``, ``mysql://``)."""
    if "://" in spec:
        return optuna.storages.RDBStorage(spec, engine_kwargs={"pool_pre_ping": True})
    path = Path(spec).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path)))


def _finite(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


class BapOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tolerates stale restores and reports ASHA-stopped trials as PRUNED.

    Args:
        space: define-by-run callable (a :class:`sweeps.space.SpaceSampler`).
        metric, mode: one metric/mode, or lists for multi-objective.
        sampler, study_name, storage: as for ``OptunaSearch``.
        final_key: result key present only in a trial's final report (a trial ending without it was stopped early).
    """

    def __init__(self, space: Any, metric: Any, mode: Any, *, sampler: Any, study_name: str, storage: Any,
                 final_key: str = FINAL_KEY) -> None:
        super().__init__(space=space, metric=metric, mode=mode, sampler=sampler, study_name=study_name,
                         storage=storage)
        self._final_key = final_key
        self._orphans: list[int] | None = None
        self._adopted_from: dict[str, str | None] = {}

    # --- asking ------------------------------------------------------------------------------------------------
    def _orphan_trial_ids(self) -> list[int]:
        """Storage ids of RUNNING study trials that no Tune trial of this searcher owns (a dead driver's asks)."""
        owned = {t._trial_id for t in self._ot_trials.values()}
        running = self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [t._trial_id for t in running if t._trial_id not in owned]

    def suggest(self, trial_id: str) -> dict | None:
        adopted_from = None
        if trial_id not in self._ot_trials and self._ot_study is not None:
            if self._orphans is None:
                self._orphans = self._orphan_trial_ids()
                if self._orphans:
                    logger.info("Adopting %d Optuna trial(s) a previous driver left RUNNING", len(self._orphans))
            if self._orphans:
                storage_id = self._orphans.pop(0)
                adopted_from = self._ot_study._storage.get_trial(storage_id).user_attrs.get(TUNE_TRIAL_ATTR)
                ot_trial = optuna.trial.Trial(self._ot_study, storage_id)
                if adopted_from:
                    ot_trial.set_user_attr(PREVIOUS_TUNE_TRIAL_ATTR, adopted_from)
            else:
                ot_trial = self._ot_study.ask()
            ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
            self._ot_trials[trial_id] = ot_trial
            self._adopted_from[trial_id] = adopted_from
        config = super().suggest(trial_id)
        if config is not None and self._adopted_from.get(trial_id):
            # The new Tune trial continues the dead one: its checkpoints and its MLflow run.
            config[RESUME_TRIAL_KEY] = self._adopted_from[trial_id]
        return config

    # --- telling -----------------------------------------------------------------------------------------------
    def _is_finished(self, trial_id: str) -> bool:
        if trial_id in self._completed_trials:
            return True
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return True  # not ours (or lost): nothing to tell
        state = self._ot_study._storage.get_trial(ot_trial._trial_id).state
        if state.is_finished():
            self._completed_trials.add(trial_id)
            return True
        return False

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, list) or trial_id in self._completed_trials:
            return  # Optuna keeps no intermediate values for multi-objective studies
        ot_trial = self._ot_trials.get(trial_id)
        value = result.get(self.metric)
        if ot_trial is None or value is None or not _finite([value]):
            return
        step = int(result.get(EPOCH, result.get("training_iteration", 0)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "step already reported" after a resume is expected
                ot_trial.report(float(value), step)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._is_finished(trial_id):
            return
        ot_trial = self._ot_trials[trial_id]
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [result.get(m) for m in metrics] if result else []
        if error:
            state, told = TrialState.FAIL, None
        elif result and self._final_key in result and _finite(values):
            state, told = TrialState.COMPLETE, (values if isinstance(self.metric, list) else values[0])
        elif result and self._final_key in result:
            state, told = TrialState.FAIL, None  # finished with a NaN/missing objective
        else:
            state, told = TrialState.PRUNED, None
            if result and EPOCH in result:
                ot_trial.set_user_attr("stopped_at_epoch", int(result[EPOCH]))
        try:
            self._ot_study.tell(ot_trial, told, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
        except Exception as exc:  # never let bookkeeping kill the sweep
            logger.warning("Optuna tell failed for trial %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._orphans = None  # recompute against the study as it is now, not as it was pickled

    @property
    def study(self) -> optuna.Study:
        return self._ot_study


class PerBudgetSearch(Searcher):
    """One single-objective :class:`BapOptunaSearch` per budget behind one Tune searcher, assigned round-robin."""

    def __init__(self, searchers: Mapping[float, BapOptunaSearch], metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self._searchers = dict(searchers)
        self._order = list(self._searchers)
        self._count = 0
        self._owner: dict[str, float] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._owner:
            self._owner[trial_id] = self._order[self._count % len(self._order)]
            self._count += 1
        return self._searchers[self._owner[trial_id]].suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._owner:
            self._searchers[self._owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._owner:
            self._searchers[self._owner[trial_id]].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        for searcher in self._searchers.values():
            searcher._orphans = None

    @property
    def studies(self) -> list[optuna.Study]:
        return [s.study for s in self._searchers.values()]


def studies_of(search: Any) -> list[optuna.Study]:
    """The Optuna studies behind a (possibly wrapped) searcher."""
    inner = getattr(search, "searcher", search)  # ConcurrencyLimiter
    if isinstance(inner, PerBudgetSearch):
        return inner.studies
    if isinstance(inner, BapOptunaSearch):
        return [inner.study]
    return []


def fail_stale_trials(study: optuna.Study, reason: str = "sweep ended without a Tune trial for it") -> int:
    """Mark every RUNNING trial of a finished sweep's study FAIL; returns how many. Only call after the sweep ended."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            study._storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            n += 1
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    return n


def study_name_for(sweep: str, budget: float | None) -> str:
    """``<sweep>`` (pareto) or ``<sweep>/budget=<b>`` (grid)."""
    return sweep if budget is None else f"{sweep}/budget={budget:g}"
