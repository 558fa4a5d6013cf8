"""The contract between the packages: one vocabulary (:mod:`bap.metrics`) spelled nowhere else, pinned values, one
entry-point protocol, and small functions.

* No module of ``bap/``, ``sweeps/``, ``analysis/`` or ``cluster/`` spells a shared metric name, ``metrics.json``
  key, run-folder file name or MLflow tag key as a string literal: they import it from :mod:`bap.metrics`, so a
  rename breaks here, not in a report three steps downstream. Single-word names that are also ordinary words of the
  code (``budget``, ``epoch``, ``score``, ``params``, ``macs``, ``usage``, ``dual``, ``union``, ``config``, ...),
  names that are also ``TrainConfig`` fields (``sharing_weight``) and names of ``bap``'s public functions
  (``sharing_loss``) cannot be told apart from their other meanings by a scan, so the scan checks the compound
  names (with ``_``, ``.`` or ``/``) that are none of these. Docstrings are prose and not scanned.
* The values users see in MLflow do not change: they are pinned below.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import bap
from bap import metrics as M
from bap.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bap", "sweeps", "analysis", "cluster")
MAX_FUNCTION_LINES = 80


def _sources() -> list[Path]:
    files = [p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))]
    return [p for p in files if p != REPO / "bap" / "metrics.py"]


def _guarded() -> set[str]:
    names = {*M.FLAT_METRICS, *M.PER_DOMAIN, *M.MLFLOW_TAGS, *M.TRIAL_META_KEYS,
             M.METRICS_FILE, M.TRIAL_CONFIG_FILE, M.ARCHITECTURE_FILE, M.SWEEP_FILE, M.SUMMARY_FILE,
             M.JSON_INPUT_SIZE, M.JSON_WALL_SECONDS, M.COST_PARAMS_RATIO, M.COST_MACS_RATIO,
             M.ATTR_TUNE_TRIAL, M.ATTR_PREVIOUS_TUNE_TRIAL, M.ATTR_STOPPED_AT_EPOCH, M.ATTR_FAIL_REASON,
             M.DEFAULT_TRACKING_URI}
    other_meanings = {f.name for f in dataclasses.fields(TrainConfig)} | set(bap.__all__)
    return {n for n in names if any(c in n for c in "_./") and n not in other_meanings}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def spelled_names(source: str, guarded: set[str]) -> list[tuple[int, str]]:
    """(line, literal) of every string constant that is a guarded name or starts a per-domain key (``val_acc/``)."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    prefixes = tuple(f"{n}/" for n in guarded if n in M.PER_DOMAIN)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
            and (node.value in guarded or node.value.startswith(prefixes))]


def test_no_module_spells_the_shared_vocabulary():
    guarded = _guarded()
    found = [f"{p.relative_to(REPO)}:{line}: {value!r}" for p in _sources()
             for line, value in spelled_names(p.read_text(), guarded)]
    assert not found, "import these from bap.metrics instead:\n" + "\n".join(found)


def test_the_scan_finds_a_spelled_name():
    source = 'def f(m):\n    """mean_val_acc in prose is fine."""\n    return m["mean_val_acc"], f"val_acc/{m}"\n'
    assert spelled_names(source, _guarded()) == [(3, "mean_val_acc"), (3, "val_acc/")]


def test_pinned_values():
    """What users filter and plot on in MLflow, and what reports read from metrics.json: never renamed."""
    assert {k: getattr(M, k) for k in (
        "EPOCH", "BUDGET", "MEAN_VAL_ACC", "SCORE", "UNION_PARAMS", "UNION_MACS", "UNION_PARAMS_RATIO",
        "UNION_MACS_RATIO", "PRUNED_AGREEMENT", "TRAIN_LOSS", "SHARING_LOSS", "SHARING_WEIGHT",
        "ENFORCED_SWITCHES_OFF", "VAL_ACC", "TEST_ACC", "USAGE", "SWITCHES_ON", "PARAMS", "MACS", "PARAMS_RATIO",
        "MACS_RATIO", "DUAL", "METRICS_FILE", "JSON_DOMAINS", "JSON_UNION", "JSON_REFERENCE", "JSON_CONFIG",
        "TAG_PARENT_RUN", "TAG_SWEEP_ID", "TAG_ROLE", "ROLE_SWEEP", "ROLE_TRIAL", "TAG_TRIAL_ID", "TAG_PRESET",
        "TAG_MODE", "TAG_OBJECTIVE", "TAG_BUDGET", "TAG_SHARING", "TAG_OPTUNA_STUDY", "TAG_OPTUNA_TRIAL",
        "TAG_PREVIOUS_TRIAL", "TRAIN_DIR", "PRUNED_DIR", "TRIAL_CONFIG_FILE", "ARCHITECTURE_FILE",
        "DEFAULT_TRACKING_URI",
    )} == {
        "EPOCH": "epoch", "BUDGET": "budget", "MEAN_VAL_ACC": "mean_val_acc", "SCORE": "score",
        "UNION_PARAMS": "union_params", "UNION_MACS": "union_macs", "UNION_PARAMS_RATIO": "union_params_ratio",
        "UNION_MACS_RATIO": "union_macs_ratio", "PRUNED_AGREEMENT": "pruned_agreement", "TRAIN_LOSS": "train_loss",
        "SHARING_LOSS": "sharing_loss", "SHARING_WEIGHT": "sharing_weight",
        "ENFORCED_SWITCHES_OFF": "enforced_switches_off", "VAL_ACC": "val_acc", "TEST_ACC": "test_acc",
        "USAGE": "usage", "SWITCHES_ON": "switches_on", "PARAMS": "params", "MACS": "macs",
        "PARAMS_RATIO": "params_ratio", "MACS_RATIO": "macs_ratio", "DUAL": "dual", "METRICS_FILE": "metrics.json",
        "JSON_DOMAINS": "domains", "JSON_UNION": "union", "JSON_REFERENCE": "reference", "JSON_CONFIG": "config",
        "TAG_PARENT_RUN": "mlflow.parentRunId", "TAG_SWEEP_ID": "bap.sweep_id", "TAG_ROLE": "bap.role",
        "ROLE_SWEEP": "sweep", "ROLE_TRIAL": "trial", "TAG_TRIAL_ID": "bap.trial_id", "TAG_PRESET": "bap.preset",
        "TAG_MODE": "bap.mode", "TAG_OBJECTIVE": "bap.objective", "TAG_BUDGET": "bap.budget",
        "TAG_SHARING": "bap.sharing", "TAG_OPTUNA_STUDY": "bap.optuna_study", "TAG_OPTUNA_TRIAL": "bap.optuna_trial",
        "TAG_PREVIOUS_TRIAL": "bap.previous_trial_id", "TRAIN_DIR": "train", "PRUNED_DIR": "pruned",
        "TRIAL_CONFIG_FILE": "trial_config.json", "ARCHITECTURE_FILE": "architecture.json",
        "DEFAULT_TRACKING_URI": "sqlite:///mlruns.db",
    }


@pytest.mark.parametrize(("metrics", "finished"), [
    ({M.PRUNED_AGREEMENT: 1.0}, True), ({M.PRUNED_AGREEMENT: 0.0}, True), ({}, False),
    ({M.PRUNED_AGREEMENT: float("nan")}, False), ({M.PRUNED_AGREEMENT: None}, False), ({M.EPOCH: 3.0}, False),
])
def test_one_rule_says_a_trial_finished(metrics, finished):
    assert M.is_finished(metrics) is finished


def test_known_metrics():
    assert M.is_known_metric(M.MEAN_VAL_ACC) and M.is_known_metric(M.domain_metric(M.VAL_ACC, "svhn"))
    assert not M.is_known_metric("mean_val_accuracy") and not M.is_known_metric("val_acc/")
    assert not M.is_known_metric(M.domain_metric("colour", "svhn"))


def test_bap_train_and_the_test_entry_points_satisfy_the_protocol():
    import bap.train
    from bap.entrypoint import PreparingEntryPoint, TrainingEntryPoint, load_entrypoint
    from tests.sweeps import prepare_entry, workers_entry

    assert isinstance(load_entrypoint("bap.train"), TrainingEntryPoint)
    assert not isinstance(bap.train, PreparingEntryPoint)
    for entry in (prepare_entry, workers_entry):
        assert isinstance(entry, PreparingEntryPoint)
    with pytest.raises(ValueError, match="lacks TrainConfig, train, available_domains"):
        load_entrypoint("bap.metrics")


def _functions(path: Path) -> list[tuple[int, str, int]]:
    tree = ast.parse(path.read_text())
    return [(node.end_lineno - node.lineno + 1, node.name, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_no_function_is_longer_than_80_lines():
    long = [f"{p.relative_to(REPO)}:{line} {name}: {length} lines" for p in _sources()
            for length, name, line in _functions(p) if length > MAX_FUNCTION_LINES]
    assert not long, "split these:\n" + "\n".join(long)
