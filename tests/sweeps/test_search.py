"""Search spaces and the Optuna searcher against a real journal file: suggestions, tells, and stale restores."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from sweeps import search, space
from sweeps.config import ConfigError

SPEC = {
    "sharing": {"choice": ["none", "union", "jaccard"]},
    "sharing_weight": {"loguniform": [0.01, 10.0]},
    "sharing_learnable": {"choice": [False, True]},
    "lr": {"loguniform": [0.001, 0.3]},
    "switch_threshold": {"choice": [0.0, 0.005]},
    "epochs": 3,
}
# A trial's reports carry the plain and the budget-feasible accuracy; the search ranks the feasible one (equal to the
# plain one in the final report).
ACC = "feasible_mean_val_acc"
FINAL = {"mean_val_acc": 0.5, ACC: 0.5, "union_macs_ratio": 0.4, "union_params_ratio": 0.6, "pruned_agreement": 1.0,
         "epoch": 3.0}


def test_parse_space_errors():
    with pytest.raises(ConfigError, match="choice needs a non-empty list"):
        space.parse_space({"sharing": {"choice": []}})
    with pytest.raises(ConfigError, match="needs low < high"):
        space.parse_space({"lr": {"uniform": [1, 1]}})
    with pytest.raises(ConfigError, match="needs low > 0"):
        space.parse_space({"lr": {"loguniform": [0, 1]}})
    with pytest.raises(ConfigError, match="must be one of"):
        space.parse_space({"lr": {"gauss": [0, 1]}})
    with pytest.raises(ConfigError, match="budget is not part of space"):
        space.parse_space({"budget": {"uniform": [0.1, 1]}})
    params, fixed = space.parse_space(SPEC)
    assert set(params) == {"sharing", "sharing_weight", "sharing_learnable", "lr", "switch_threshold"}
    assert fixed == {"epochs": 3}


def test_space_sampler_conditions_and_constants():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampler = space.SpaceSampler(SPEC, budget=0.25, study_name="s/budget=0.25")
    seen_none = seen_other = False
    for _ in range(30):
        trial = study.ask()
        constants = sampler(trial)
        params = trial.params
        assert constants["budget"] == 0.25 and constants["epochs"] == 3
        assert constants["optuna_trial"] == trial.number and constants["optuna_study"] == "s/budget=0.25"
        if params["sharing"] == "none":
            seen_none = True
            assert "sharing_weight" not in params and "sharing_learnable" not in params
        else:
            seen_other = True
            assert 0.01 <= params["sharing_weight"] <= 10.0 and "sharing_learnable" in params
        study.tell(trial, 0.0)
    assert seen_none and seen_other


def test_space_sampler_budget_range_and_split():
    study = optuna.create_study(directions=["maximize", "minimize"])
    sampler = space.SpaceSampler({"lr": {"uniform": [0.01, 0.1]}}, budget_range=(0.1, 0.9))
    trial = study.ask()
    constants = sampler(trial)
    assert 0.1 <= trial.params["budget"] <= 0.9 and "budget" not in constants
    train, meta = space.split_trial_config({**trial.params, **constants})
    assert "optuna_trial" not in train and meta["optuna_trial"] == trial.number
    with pytest.raises(ValueError):
        space.SpaceSampler({}, budget=0.5, budget_range=(0.1, 1.0))


def test_validation_configs_cover_every_bound():
    variants = space.validation_configs(SPEC, [0.25, 1.0])
    assert {"epochs": 3, "budget": 0.25} in variants and {"epochs": 3, "lr": 0.3} in variants
    assert {"epochs": 3, "sharing": "jaccard"} in variants


def test_samplers_are_pinned():
    assert isinstance(search.make_sampler("tpe", 0, True), optuna.samplers.TPESampler)
    assert isinstance(search.make_sampler("nsga2", 0, True), optuna.samplers.NSGAIISampler)
    assert isinstance(search.make_sampler("random", 0, False), optuna.samplers.RandomSampler)


def _searcher(tmp_path, multi: bool = False, name: str = "sweep"):
    storage = str(tmp_path / "journal.log")
    metric, mode = search.objectives("mean_val_acc", multi)
    if multi:
        sampler = space.SpaceSampler(SPEC, budget_range=(0.1, 1.0), study_name=name)
    else:
        sampler, metric, mode = space.SpaceSampler(SPEC, budget=0.5, study_name=name), metric[0], mode[0]
    return search.AskTellSearcher(sampler, metric, mode, sampler=search.make_sampler("tpe", 0, multi),
                                  study_name=name, storage=storage)


def _states(study):
    return sorted(t.state.name for t in study.get_trials(deepcopy=False))


def test_complete_pruned_failed_single_objective(tmp_path):
    s = _searcher(tmp_path)
    for tid in ("t0", "t1", "t2"):
        config = s.suggest(tid)
        assert config["budget"] == 0.5 and "lr" in config
    s.on_trial_result("t0", {ACC: 0.3, "epoch": 1.0})
    s.on_trial_complete("t0", FINAL)
    s.on_trial_result("t1", {ACC: 0.2, "epoch": 1.0})
    s.on_trial_complete("t1", {ACC: 0.2, "epoch": 1.0})  # stopped early: no final key
    s.on_trial_complete("t2", None, error=True)
    trials = {t.user_attrs["tune_trial_id"]: t for t in s.study.get_trials()}
    assert trials["t0"].state == TrialState.COMPLETE and trials["t0"].value == 0.5
    assert trials["t0"].intermediate_values == {1: 0.3}
    assert trials["t1"].state == TrialState.PRUNED and trials["t1"].user_attrs["stopped_at_epoch"] == 1
    assert trials["t2"].state == TrialState.FAIL


def test_the_study_is_told_the_budget_feasible_accuracy(tmp_path):
    """Before a trial meets its budget its plain accuracy flatters it: Optuna ranks what it would deliver now."""
    assert search.objectives("score", False) == (["feasible_score"], ["max"])
    s = _searcher(tmp_path)
    s.suggest("t0")
    s.on_trial_result("t0", {"mean_val_acc": 0.9, ACC: 0.3, "epoch": 1.0})
    s.on_trial_complete("t0", {**FINAL, "mean_val_acc": 0.6, ACC: 0.6})
    (t,) = s.study.get_trials()
    assert t.intermediate_values == {1: 0.3} and t.value == 0.6


def test_a_new_study_starts_from_the_documented_defaults_once(tmp_path):
    """A small sweep is not at the mercy of its first random draws: each new study's first trial runs the defaults
    (restricted to what the space can take), later ones are sampled; a restored searcher does not enqueue again."""
    sampler = space.SpaceSampler(SPEC, budget=0.5, study_name="s")
    defaults = {"sharing": "union", "sharing_weight": 5.0, "sharing_learnable": False, "lr": 0.05,
                "switch_threshold": 0.005, "dual_lr": 0.5}
    first = sampler.first_trial(defaults)
    assert first == {"sharing": "union", "sharing_weight": 5.0, "sharing_learnable": False, "lr": 0.05,
                     "switch_threshold": 0.005}  # dual_lr is not searched here
    s = search.AskTellSearcher(sampler, ACC, "max", sampler=search.make_sampler("random", 0, False), study_name="s",
                               storage=str(tmp_path / "journal.log"), first=first)
    config = s.suggest("t0")
    assert {k: config[k] for k in first} == first
    assert s.suggest("t1")["lr"] != 0.05  # the next one is the sampler's
    again = search.AskTellSearcher(sampler, ACC, "max", sampler=search.make_sampler("random", 0, False),
                                   study_name="s", storage=str(tmp_path / "journal.log"), first=first)
    again.suggest("t2")
    assert sum(t.params.get("lr") == 0.05 for t in again.study.get_trials()) == 1
    assert sampler.first_trial({**defaults, "sharing": "none"}) == {"sharing": "none", "lr": 0.05,
                                                                    "switch_threshold": 0.005}


def test_multi_objective_values(tmp_path):
    s = _searcher(tmp_path, multi=True)
    s.suggest("t0")
    s.on_trial_result("t0", {ACC: 0.3, "epoch": 1.0})  # ignored: no intermediate values in MO
    s.on_trial_complete("t0", FINAL)
    (t,) = s.study.get_trials()
    assert t.values == [0.5, 0.4, 0.6] and s.study.directions[1].name == "MINIMIZE"


def test_stale_restore_never_reports_to_a_finished_trial(tmp_path):
    """The UpdateFinishedTrialError crash: the searcher snapshot predates the trial's completion."""
    s = _searcher(tmp_path)
    s.suggest("t0")
    s.on_trial_result("t0", {ACC: 0.3, "epoch": 1.0})
    s.save(str(tmp_path / "state.pkl"))  # Tune's last snapshot before the kill
    s.on_trial_result("t0", {ACC: 0.4, "epoch": 2.0})
    s.on_trial_complete("t0", FINAL)  # ...the trial completed, then the driver died

    restored = _searcher(tmp_path)
    restored.restore(str(tmp_path / "state.pkl"))
    # Tune resumes t0 from its checkpoint; it re-reports and completes again: no exception, nothing changes.
    restored.on_trial_result("t0", {ACC: 0.45, "epoch": 3.0})
    restored.on_trial_complete("t0", {**FINAL, ACC: 0.9})
    (t,) = restored.study.get_trials()
    assert t.state == TrialState.COMPLETE and t.value == 0.5


def test_orphaned_optuna_trials_are_adopted_not_left_running(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("t0")
    s.save(str(tmp_path / "state.pkl"))
    orphan_config = s.suggest("t1")  # asked after the last snapshot: Tune will never know t1
    restored = _searcher(tmp_path)
    restored.restore(str(tmp_path / "state.pkl"))
    adopted = restored.suggest("t9")  # the restored sweep's next new trial takes over the orphan
    assert adopted.pop("resume_trial") == "t1"  # ...and continues from t1's checkpoints and MLflow run
    assert adopted == orphan_config
    restored.suggest("t10")  # no orphan left: a new Optuna trial
    assert len(restored.study.get_trials()) == 3
    for tid in ("t0", "t9", "t10"):
        restored.on_trial_complete(tid, FINAL)
    assert _states(restored.study) == ["COMPLETE"] * 3
    attrs = {t.user_attrs["tune_trial_id"] for t in restored.study.get_trials()}
    assert attrs == {"t0", "t9", "t10"}


def test_fail_stale_trials(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("t0")
    s.suggest("t1")
    s.on_trial_complete("t0", FINAL)
    assert search.fail_stale_trials(s.study) == 1
    assert _states(s.study) == ["COMPLETE", "FAIL"]


def test_multi_objective_stopped_early_and_failed(tmp_path):
    s = _searcher(tmp_path, multi=True)
    s.suggest("t0")
    s.suggest("t1")
    s.on_trial_complete("t0", {ACC: 0.2, "epoch": 1.0})  # stopped early
    s.on_trial_complete("t1", None, error=True)
    assert _states(s.study) == ["FAIL", "PRUNED"]


def test_the_searcher_pickles_without_a_connection_and_reloads_its_study(tmp_path):
    import pickle

    s = _searcher(tmp_path)
    s.suggest("t0")
    copy = pickle.loads(pickle.dumps(s))
    copy.on_trial_result("t0", {ACC: 0.3, "epoch": 1.0})  # reported through a reloaded study
    copy.on_trial_complete("t0", FINAL)
    (t,) = s.study.get_trials()
    assert t.state == TrialState.COMPLETE and t.intermediate_values == {1: 0.3}


def test_nan_objective_fails_the_trial(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("t0")
    s.on_trial_complete("t0", {**FINAL, ACC: math.nan})
    assert _states(s.study) == ["FAIL"]


def test_per_budget_search_round_robin_and_restore(tmp_path):
    storage = str(tmp_path / "journal.log")
    subs = {}
    for i, b in enumerate((0.25, 0.5, 1.0)):
        name = search.study_name_for("sw", b)
        subs[b] = search.AskTellSearcher(space.SpaceSampler(SPEC, budget=b, study_name=name), ACC, "max",
                                         sampler=search.make_sampler("tpe", i, False), study_name=name,
                                         storage=storage)
    s = search.PerBudgetSearch(subs, ACC, "max")
    budgets = [s.suggest(f"t{i}")["budget"] for i in range(6)]
    assert budgets == [0.25, 0.5, 1.0, 0.25, 0.5, 1.0]
    s.save(str(tmp_path / "state.pkl"))
    for i in range(6):
        s.on_trial_complete(f"t{i}", FINAL)
    assert [len(st.get_trials()) for st in s.studies] == [2, 2, 2]
    assert [st.study_name for st in s.studies] == ["sw/budget=0.25", "sw/budget=0.5", "sw/budget=1"]
    restored = search.PerBudgetSearch({}, ACC, "max")
    restored.restore(str(tmp_path / "state.pkl"))
    restored.on_trial_complete("t0", FINAL)  # already told: silently ignored
    assert restored.suggest("t6")["budget"] == 0.25
    assert search.studies_of(restored)[0].study_name == "sw/budget=0.25"


def test_a_searcher_saved_before_the_objectives_were_kept_apart_resumes(tmp_path):
    """A snapshot of the earlier layout (every objective as Tune's metric, no _objectives) restores into a searcher
    that shows Tune the first objective and tells the study all of them."""
    import pickle

    metrics, modes = [ACC, "union_macs_ratio", "union_params_ratio"], ["max", "min", "min"]
    s = _searcher(tmp_path, multi=True)
    s.suggest("t0")
    old = s.__getstate__()
    for key in ("_objectives", "_modes", "_multi"):
        old.pop(key)
    old.update(_metric=metrics, _mode=modes)
    (tmp_path / "old.pkl").write_bytes(pickle.dumps(old))
    restored = _searcher(tmp_path, multi=True)
    restored.restore(str(tmp_path / "old.pkl"))
    assert restored.metric == ACC and restored.mode == "max"
    assert restored.multi_objective and restored.objectives == metrics
    restored.on_trial_complete("t0", FINAL)
    told = restored.study.get_trials()[0]
    assert told.state == TrialState.COMPLETE and told.values == [0.5, 0.4, 0.6]
    legacy = search.AskTellSearcher.__new__(search.AskTellSearcher)  # pickled inside a grid sweep's old state
    legacy.__dict__.update(old)
    unpickled = pickle.loads(pickle.dumps(legacy))
    assert unpickled.objectives == metrics and unpickled.metric == ACC and unpickled.multi_objective
