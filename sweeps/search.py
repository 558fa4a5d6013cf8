"""Optuna as Tune's search algorithm: a small Tune ``Searcher`` on Optuna's ask/tell API, pinned samplers, persistent
studies, one study per budget.

* **Storage**: a journal file by default (``JournalStorage(JournalFileBackend(path))``: safe for parallel writers,
  needs no server, NFS-friendly) or any RDB URL (``postgresql://...``) for clusters. The study is named after the
  sweep, so ``optuna-dashboard`` / ``optuna.load_study`` open it directly.
* **Samplers** are pinned (Optuna 5 changed the multi-objective default from NSGA-II to TPE).
* **Modes**: ``grid`` runs one single-objective study per budget (``<sweep>/budget=0.25``, ...) behind one Tune
  searcher (:class:`PerBudgetSearch`, round-robin over budgets); ``pareto`` runs one multi-objective study
  (objective up; down, ``pareto_costs``: by default the union MACs and params ratios, or the measured latency
  ratio a trial reports at its end -- Tune is shown only the objective, which every epoch's result carries).
* **Ask and tell** (:class:`AskTellSearcher`): ``study.ask()`` and the define-by-run space
  (:class:`sweeps.space.SpaceSampler`) give a trial's config; intermediate results go to ``trial.report`` (single
  objective); the end goes to ``study.tell(number, values, state=..., skip_if_finished=True)``: COMPLETE when the
  trial finished (:func:`bap.metrics.is_finished`) with finite objectives, PRUNED when ASHA stopped it, FAIL on an
  error or a NaN objective. Only Optuna's public API is used, except :func:`sweeps._ray_compat.optuna_trial`.
* **Restore safety**: Tune restores the searcher from a snapshot that can be older than the study. A trial whose
  Optuna twin already finished is never told again (``skip_if_finished``), nor reported to; Optuna trials a dead
  driver asked for but Tune never recorded are adopted by the next new Tune trials (same parameters; the config's
  ``resume_trial`` names the dead trial, whose checkpoints and MLflow run the new one continues), so no study trial
  stays RUNNING; :func:`fail_stale_trials` closes any left.
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
from ray.tune.search.searcher import Searcher

from bap import metrics as M
from sweeps import _ray_compat
from sweeps.config import PARETO_COSTS

logger = logging.getLogger(__name__)


def objectives(objective: str, multi_objective: bool,
               costs: Sequence[str] = ("macs", "params")) -> tuple[list[str], list[str]]:
    """(metrics, modes) the study optimises: the objective's budget-feasible twin (:func:`bap.metrics.feasible`:
    what the trial would deliver now, equal to the objective in its final report), and in pareto mode the costs
    (names of :data:`sweeps.config.PARETO_COSTS`; by default the union MACs and params ratios)."""
    ranked = M.feasible(objective)
    if multi_objective:
        return [ranked, *(PARETO_COSTS[c] for c in costs)], ["max", *("min" for _ in costs)]
    return [ranked], ["max"]


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
        return _rdb_storage(spec)
    path = Path(spec).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path)))


def _rdb_storage(spec: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage; on a new database two sweeps starting at once both create its tables, and one then
    fails on the other's (a duplicate table or type): that one waits a moment and opens what the other made."""
    import random
    import time

    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(spec, engine_kwargs={"pool_pre_ping": True})
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def _finite(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def _upgraded(state: dict[str, Any]) -> dict[str, Any]:
    """A searcher state saved before the objectives were kept apart from Tune's metric (a sweep resumed across the
    upgrade): the study's objectives from the metric list, Tune's metric its first element."""
    state = dict(state)
    if "_objectives" not in state:
        metric, mode = state.get("_metric"), state.get("_mode")
        state["_multi"] = isinstance(metric, list)
        state["_objectives"] = list(metric) if isinstance(metric, list) else [metric]
        state["_modes"] = list(mode) if isinstance(mode, list) else [mode]
        state["_metric"] = state["_objectives"][0]
        state["_mode"] = state["_modes"][0]
    return state


class AskTellSearcher(Searcher):
    """One Optuna study as a Tune searcher, through ``ask``/``tell``.

    Args:
        space: define-by-run callable ``space(trial) -> constants`` (a :class:`sweeps.space.SpaceSampler`).
        metric, mode: one metric and ``max``/``min``, or lists of them for a multi-objective study.
        sampler: the Optuna sampler.
        study_name: the study (created, or loaded if it exists).
        storage: a journal file path or an RDB URL (:func:`make_storage`); the searcher pickles the spec, not a
            connection, so Tune can snapshot it.
        first: parameter values for the first trial of a new study (``study.enqueue_trial``), e.g. the documented
            defaults (:meth:`sweeps.space.SpaceSampler.first_trial`); ignored when the study has trials already.
    """

    def __init__(self, space: Any, metric: str | list[str], mode: str | list[str], *, sampler: Any,
                 study_name: str, storage: str, first: Mapping[str, Any] | None = None) -> None:
        # Tune checks that every result carries the searcher's metric; costs a trial measures only at its end
        # (latency) are not in its epoch reports, so Tune is given the first objective and the study all of them.
        super().__init__(metric=metric[0] if isinstance(metric, list) else metric,
                         mode=mode[0] if isinstance(mode, list) else mode)
        self._objectives = list(metric) if isinstance(metric, list) else [metric]
        self._modes = list(mode) if isinstance(mode, list) else [mode]
        self._multi = isinstance(metric, list)
        self._space = space
        self._sampler = sampler
        self._study_name = study_name
        self._storage_spec = str(storage)
        self._first = dict(first or {})
        self._numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self._told: set[str] = set()
        self._adopted_from: dict[str, str] = {}  # Tune trial id -> the dead driver's Tune trial id it continues
        self._orphans: list[int] | None = None  # RUNNING study trials nobody here owns; computed once per restore
        self._study: optuna.Study | None = None
        self._live: dict[str, optuna.trial.Trial] = {}  # trials asked by this process

    # Tune pickles the searcher into its experiment state: keep configuration and bookkeeping, not connections.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_study=None, _live={}, _orphans=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(_upgraded(state))

    @property
    def multi_objective(self) -> bool:
        return self._multi

    @property
    def objectives(self) -> list[str]:
        """Every metric the study optimises, in its order (:attr:`metric` is the first: what Tune sees)."""
        return self._objectives

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            modes = self._modes
            self._study = optuna.create_study(
                study_name=self._study_name, storage=make_storage(self._storage_spec), sampler=self._sampler,
                directions=["maximize" if m == "max" else "minimize" for m in modes], load_if_exists=True)
            if self._first and not self._study.get_trials(deepcopy=False):
                self._study.enqueue_trial(self._first)
        return self._study

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # metric, mode and space are fixed at construction

    # --- asking ------------------------------------------------------------------------------------------------
    def _trial(self, trial_id: str) -> optuna.trial.Trial:
        if trial_id not in self._live:
            self._live[trial_id] = _ray_compat.optuna_trial(self.study, self._numbers[trial_id])
        return self._live[trial_id]

    def _take_orphan(self) -> int | None:
        if self._orphans is None:
            owned = set(self._numbers.values())
            running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            self._orphans = [t.number for t in running if t.number not in owned]
            if self._orphans:
                logger.info("Adopting %d Optuna trial(s) a previous driver left RUNNING", len(self._orphans))
        return self._orphans.pop(0) if self._orphans else None

    def _new_trial(self, trial_id: str) -> None:
        orphan = self._take_orphan()
        if orphan is None:
            trial = self.study.ask()
        else:
            trial = _ray_compat.optuna_trial(self.study, orphan)
            previous = trial.user_attrs.get(M.ATTR_TUNE_TRIAL)
            if previous:
                trial.set_user_attr(M.ATTR_PREVIOUS_TUNE_TRIAL, previous)
                self._adopted_from[trial_id] = previous
        trial.set_user_attr(M.ATTR_TUNE_TRIAL, trial_id)
        self._numbers[trial_id] = trial.number
        self._live[trial_id] = trial

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._numbers:
            self._new_trial(trial_id)
        trial = self._trial(trial_id)
        constants = self._space(trial)  # an adopted trial's suggest_* calls return the values it already has
        config = {**trial.params, **constants}
        if trial_id in self._adopted_from:  # the new Tune trial continues the dead one: its checkpoints and run
            config[M.RESUME_TRIAL_KEY] = self._adopted_from[trial_id]
        return config

    # --- telling -----------------------------------------------------------------------------------------------
    def _finished(self, trial_id: str) -> bool:
        """True if there is nothing to tell: not ours, told already, or finished in the study (a stale restore)."""
        if trial_id in self._told or trial_id not in self._numbers:
            return True
        number = self._numbers[trial_id]
        frozen = next((t for t in self.study.get_trials(deepcopy=False) if t.number == number), None)
        if frozen is None or frozen.state.is_finished():
            self._told.add(trial_id)
            return True
        return False

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.multi_objective or trial_id in self._told or trial_id not in self._numbers:
            return  # Optuna keeps no intermediate values for multi-objective studies
        value = result.get(self.metric)
        if value is None or not _finite([value]):
            return
        step = int(result.get(M.EPOCH, result.get("training_iteration", 0)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "step already reported" after a resume is expected
                self._trial(trial_id).report(float(value), step)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._told.add(trial_id)

    def _outcome(self, trial_id: str, result: dict | None, error: bool) -> tuple[TrialState, Any]:
        values = [result.get(m) for m in self._objectives] if result else []
        if error:
            return TrialState.FAIL, None
        if result and M.is_finished(result):
            if not _finite(values):
                return TrialState.FAIL, None  # finished with a NaN or missing objective
            return TrialState.COMPLETE, values if self.multi_objective else values[0]
        if result and M.EPOCH in result:
            self._trial(trial_id).set_user_attr(M.ATTR_STOPPED_AT_EPOCH, int(result[M.EPOCH]))
        return TrialState.PRUNED, None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._finished(trial_id):
            return
        try:
            state, values = self._outcome(trial_id, result, error)
            self.study.tell(self._numbers[trial_id], values, state=state, skip_if_finished=True)
        except Exception as exc:  # never let bookkeeping kill the sweep
            logger.warning("Optuna tell failed for trial %s: %s", trial_id, exc)
        self._told.add(trial_id)
        self._live.pop(trial_id, None)

    # --- snapshots ---------------------------------------------------------------------------------------------
    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            # recomputed against the study as it is now: orphans, live trials
            self.__dict__.update(_upgraded(pickle.load(f)))


class PerBudgetSearch(Searcher):
    """One single-objective :class:`AskTellSearcher` per budget behind one Tune searcher, assigned round-robin."""

    def __init__(self, searchers: Mapping[float, AskTellSearcher], metric: str, mode: str) -> None:
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
            pickle.dump(self.__dict__.copy(), f)  # the sub-searchers pickle without their connections

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    @property
    def studies(self) -> list[optuna.Study]:
        return [s.study for s in self._searchers.values()]


def studies_of(search: Any) -> list[optuna.Study]:
    """The Optuna studies behind a (possibly wrapped) searcher."""
    inner = getattr(search, "searcher", search)  # ConcurrencyLimiter
    if isinstance(inner, PerBudgetSearch):
        return inner.studies
    if isinstance(inner, AskTellSearcher):
        return [inner.study]
    return []


def fail_stale_trials(study: optuna.Study, reason: str = "sweep ended without a Tune trial for it") -> int:
    """Mark every RUNNING trial of a finished sweep's study FAIL; returns how many. Only call after the sweep ended."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            _ray_compat.optuna_trial(study, t.number).set_user_attr(M.ATTR_FAIL_REASON, reason)
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            n += 1
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    return n


def study_name_for(sweep: str, budget: float | None) -> str:
    """``<sweep>`` (pareto) or ``<sweep>/budget=<b>`` (grid)."""
    return sweep if budget is None else f"{sweep}/budget={budget:g}"
