"""The vocabulary shared by the training run, the sweep and the analysis -- the one contract between them.

Every metric name, ``metrics.json`` key, MLflow tag, trial-config key, run-folder name and shared default that crosses
a package boundary is defined here once, and producers (``bap.training``, ``sweeps/``) and consumers (``sweeps/``,
``analysis/``) import it, so a renamed metric breaks a test instead of a report three steps downstream
(``tests/test_contract.py`` fails when a module spells one of these names as a string literal). The rule "a trial
finished" lives here too (:func:`is_finished`). Costs are counted in parameters and MACs (multiply-accumulates;
1 MAC = 2 FLOPs).

Torch-free and import-light on purpose: the analysis and the sweep driver import it without torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

# ---------------------------------------------------------------------------------------------------------------
# Flat scalar metrics, reported once per epoch (Ray Tune / MLflow) and stored in metrics.json.
# ---------------------------------------------------------------------------------------------------------------
EPOCH = "epoch"
BUDGET = "budget"
MEAN_VAL_ACC = "mean_val_acc"  # mean over domains of top-1 val accuracy, in [0, 1]
SCORE = "score"  # Decathlon score on the val split (max 1000 per domain)
UNION_PARAMS = "union_params"  # parameters of the pruned network (all domains), absolute
UNION_MACS = "union_macs"  # MACs per image of the pruned network (worst domain), absolute
UNION_PARAMS_RATIO = "union_params_ratio"  # relative to one single-domain network with its head
UNION_MACS_RATIO = "union_macs_ratio"
UNPRUNED_PARAMS = "unpruned_params"  # the multi-domain network with every switch on (all domains' BNs and heads)
UNPRUNED_MACS = "unpruned_macs"  # its MACs per image (largest head)
PRUNED_AGREEMENT = "pruned_agreement"  # fraction of val predictions where pruned == switched; final report only
TRAIN_LOSS = "train_loss"  # mean total loss over the epoch
SHARING_LOSS = "sharing_loss"
SHARING_WEIGHT = "sharing_weight"
ENFORCED_SWITCHES_OFF = "enforced_switches_off"  # switches turned off by the final budget enforcement
RESUMED_FROM_EPOCH = "resumed_from_epoch"  # reported by a sweep trial: the epoch this attempt resumed after (0 = fresh)
# Budget-feasible: what the run would deliver now -- its switches with the budget enforced, BN statistics re-estimated
# (equal to the plain metrics once every domain is within budget). Early stopping and the search rank these.
FEASIBLE_MEAN_VAL_ACC = "feasible_mean_val_acc"
FEASIBLE_SCORE = "feasible_score"
BUDGET_TARGET = "budget_target"  # the annealed target usage at the end of the epoch (1.0 -> budget)
# Measured inference latency of the pruned network, final report only (bap.latency): each domain's deployable
# single-domain network (bap.export.single_domain_module: its unused channels removed, the kept counts padded to
# LATENCY_CHANNEL_MULTIPLE, BNs folded) is timed with the torch threads the run was given, next to the same domain's
# unpruned network timed in the same run. Per domain under
# domain_metric(name, d); the flat value is the slowest domain's (as UNION_MACS is the worst domain's).
LATENCY_THREADS = "latency_threads"  # torch threads the CPU timing used
LATENCY_NEIGHBOURS = "latency_neighbours"  # other training runs live on this machine while it timed (0 = alone)
LATENCY_CHANNEL_MULTIPLE = "latency_channel_multiple"  # the kept channel counts were padded to a multiple of (1 = none)
LATENCY_DEVICES = ("cpu", "cuda")  # cuda only when the run trained on a GPU
LATENCY_BATCHES = (1, 64)
LATENCY_MS, LATENCY_RATIO = "ms", "ratio"  # milliseconds per call of a whole batch | pruned ms / unpruned ms


def latency_metric(device: str, batch: int, kind: str = LATENCY_MS) -> str:
    """Name of a latency metric: ``latency_metric("cpu", 64) == "latency_cpu_b64_ms"`` (ms per batch of 64),
    ``latency_metric("cpu", 1, "ratio") == "latency_cpu_b1_ratio"`` (the pruned over the unpruned network's ms)."""
    if device not in LATENCY_DEVICES or batch not in LATENCY_BATCHES or kind not in (LATENCY_MS, LATENCY_RATIO):
        raise ValueError(f"no latency metric for device {device!r}, batch {batch!r}, kind {kind!r}; allowed: device "
                         f"{'|'.join(LATENCY_DEVICES)}, batch {'|'.join(map(str, LATENCY_BATCHES))}, kind ms|ratio")
    return f"latency_{device}_b{batch}_{kind}"


LATENCY_METRICS: tuple[str, ...] = tuple(
    latency_metric(device, batch, kind)
    for device in LATENCY_DEVICES for batch in LATENCY_BATCHES for kind in (LATENCY_MS, LATENCY_RATIO))

FLAT_METRICS: tuple[str, ...] = (
    EPOCH, BUDGET, MEAN_VAL_ACC, SCORE, UNION_PARAMS, UNION_MACS, UNION_PARAMS_RATIO, UNION_MACS_RATIO,
    UNPRUNED_PARAMS, UNPRUNED_MACS, PRUNED_AGREEMENT, TRAIN_LOSS, SHARING_LOSS, SHARING_WEIGHT,
    ENFORCED_SWITCHES_OFF, RESUMED_FROM_EPOCH, FEASIBLE_MEAN_VAL_ACC, FEASIBLE_SCORE, BUDGET_TARGET,
    LATENCY_THREADS, LATENCY_NEIGHBOURS, LATENCY_CHANNEL_MULTIPLE, *LATENCY_METRICS,
)

# Per-domain metrics: domain_metric(VAL_ACC, "svhn") -> "val_acc/svhn".
VAL_ACC = "val_acc"
FEASIBLE_VAL_ACC = "feasible_val_acc"  # a domain's budget-feasible val accuracy (see FEASIBLE_MEAN_VAL_ACC)
TEST_ACC = "test_acc"
DOMAIN_TRAIN_LOSS = "train_loss"
USAGE = "usage"  # fraction of the domain's switch cost that is on, in the unit of the budget
SWITCHES_ON = "switches_on"  # plain fraction of the domain's switches that are on
PARAMS = "params"
MACS = "macs"
PARAMS_RATIO = "params_ratio"
MACS_RATIO = "macs_ratio"
DUAL = "dual"  # Lagrange multiplier of the domain's budget constraint

PER_DOMAIN: tuple[str, ...] = (
    VAL_ACC, FEASIBLE_VAL_ACC, TEST_ACC, DOMAIN_TRAIN_LOSS, USAGE, SWITCHES_ON, PARAMS, MACS, PARAMS_RATIO, MACS_RATIO, DUAL,
    *LATENCY_METRICS,
)


def domain_metric(name: str, domain: str) -> str:
    """Flat metric key of a per-domain metric, e.g. ``domain_metric("val_acc", "svhn") == "val_acc/svhn"``."""
    return f"{name}/{domain}"


def split_domain_metric(key: str) -> tuple[str, str] | None:
    """Inverse of :func:`domain_metric`: ``"val_acc/svhn" -> ("val_acc", "svhn")``; None for a flat key."""
    name, sep, domain = key.partition("/")
    return (name, domain) if sep else None


FEASIBLE = {MEAN_VAL_ACC: FEASIBLE_MEAN_VAL_ACC, SCORE: FEASIBLE_SCORE}


def feasible(objective: str) -> str:
    """The budget-feasible twin of an objective (``mean_val_acc`` -> ``feasible_mean_val_acc``): what the search and
    early stopping rank at every epoch. Equal to the objective in a trial's final report."""
    return FEASIBLE.get(objective, objective)


def is_measured(key: str) -> bool:
    """True for a metric that is measured, not computed (latency, its threads and neighbours): a run repeated with
    the same seed reproduces every metric except these."""
    split = split_domain_metric(key)
    name = key if split is None else split[0]
    return name in LATENCY_METRICS or name in (LATENCY_THREADS, LATENCY_NEIGHBOURS, LATENCY_CHANNEL_MULTIPLE)


def is_known_metric(key: str) -> bool:
    """True if ``key`` is a flat metric or a per-domain metric of this vocabulary."""
    split = split_domain_metric(key)
    return key in FLAT_METRICS if split is None else split[0] in PER_DOMAIN and bool(split[1])


def is_finished(metrics: Mapping[str, Any]) -> bool:
    """A trial finished when it reported its final, budget-enforced and pruned metrics: ``pruned_agreement``.

    The one rule for the whole project (the scheduler, the searcher, MLflow's run status, the summary, the analysis):
    a trial stopped early, failed or still running has not reported it.
    """
    value = metrics.get(PRUNED_AGREEMENT)
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(float(value))


# ---------------------------------------------------------------------------------------------------------------
# metrics.json (written by bap.train, read by sweeps/ and analysis/)
# ---------------------------------------------------------------------------------------------------------------
METRICS_FILE = "metrics.json"
JSON_DOMAINS = "domains"  # {domain: {val_acc, usage, params, macs, ..., enforced_switches_off}}
JSON_UNION = "union"  # the pruned network: COST_KEYS
JSON_REFERENCE = "reference"  # one single-domain network with its head: params, macs, flops
JSON_UNPRUNED = "unpruned"  # every switch on, all domains' BNs and heads: params, macs, flops, ratios
JSON_CONFIG = "config"  # the run's TrainConfig
JSON_INPUT_SIZE = "input_size"  # (C, H, W) the costs were counted at
JSON_HISTORY = "history"  # every epoch's flat metrics
JSON_BACKBONE = "backbone"  # the backbone checkpoint the run started from
JSON_WALL_SECONDS = "wall_seconds"
JSON_LATENCY = "latency"  # the flat latency metrics (slowest domain, threads, neighbours, channel multiple); per
# domain they are in JSON_DOMAINS
# Keys inside JSON_UNION / JSON_REFERENCE / JSON_UNPRUNED.
COST_PARAMS = "params"
COST_MACS = "macs"
COST_FLOPS = "flops"
COST_PARAMS_RATIO = "params_ratio"
COST_MACS_RATIO = "macs_ratio"

# ---------------------------------------------------------------------------------------------------------------
# Run folders
# ---------------------------------------------------------------------------------------------------------------
TRAIN_DIR = "train"  # a sweep trial's training outputs, inside its Tune trial folder
PRUNED_DIR = "pruned"  # the pruned model (bap.save_pruned), inside a run's output folder
CHECKPOINTS_DIR = "checkpoints"  # per-epoch checkpoints, inside a run's output folder
ARCHITECTURE_FILE = "architecture.json"  # the pruned architecture, inside PRUNED_DIR
WEIGHTS_FILE = "model.pt"  # the pruned weights, inside PRUNED_DIR
TRIAL_CONFIG_FILE = "trial_config.json"  # a sweep trial's resolved training config, inside TRAIN_DIR
SWEEP_FILE = "sweep.yaml"  # the resolved sweep configuration: next to the Tune results and on the parent run
SUMMARY_FILE = "summary.json"  # the end-of-sweep summary, an artifact of the parent run
ERROR_FILE = "error.txt"  # a failed trial's traceback, an artifact of its run (Tune writes one of this name too)

# ---------------------------------------------------------------------------------------------------------------
# MLflow: tags that mark the sweep's structure (users filter on them in the UI: their values never change)
# ---------------------------------------------------------------------------------------------------------------
TAG_PARENT_RUN = "mlflow.parentRunId"  # MLflow's own nested-run tag
TAG_SWEEP_ID = "bap.sweep_id"
TAG_ROLE = "bap.role"  # ROLE_SWEEP (parent) or ROLE_TRIAL (child)
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
TAG_TRIAL_ID = "bap.trial_id"  # Ray Tune trial id
TAG_PRESET = "bap.preset"
TAG_MODE = "bap.mode"
TAG_OBJECTIVE = "bap.objective"
TAG_BUDGET = "bap.budget"
TAG_SHARING = "bap.sharing"
TAG_OPTUNA_STUDY = "bap.optuna_study"
TAG_OPTUNA_TRIAL = "bap.optuna_trial"
TAG_RESTARTS = "bap.restarts"
TAG_ORPHANED = "bap.orphaned"
TAG_PREVIOUS_TRIAL = "bap.previous_trial_id"  # a trial that took over a dead driver's unrecorded trial
TAG_STOPPED_EARLY = "bap.stopped_early"
TAG_ERROR = "bap.error"
TAG_TRAIN_DIR = "bap.train_dir"
TAG_RESUMED_AT = "bap.resumed_at"
TAG_NOTE = "mlflow.note.content"  # MLflow's own: a run's (or experiment's) description, markdown
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow's own: which UI view an experiment opens in (3.x)
EXPERIMENT_KIND_TRAINING = "custom_model_development"
UI_TRAINING_VIEW = "workflowType=machine_learning"  # the MLflow UI's URL parameter for its model-training view
TAG_LATENCY_RETIMED = "bap.latency_retimed"  # when the latency metrics were re-measured alone (python -m analysis.retime)
TAG_NODES = "bap.nodes"  # the Ray node addresses a trial ran on, in order (more than one after a node was lost)
TUNE_NODE_IP = "node_ip"  # Tune's own key, in every reported result: the address of the node that reported it

# Copies of the figures a user looks for first, logged on every trial run under short names that sort to the top of
# its metrics list (MLflow lists metrics by name). The analysis reads the full names and leaves these out.
HEADLINE_METRICS: dict[str, str] = {
    "_acc": FEASIBLE_MEAN_VAL_ACC,  # budget-feasible mean val accuracy (what the search ranks)
    "_params_ratio": UNION_PARAMS_RATIO,
    "_macs_ratio": UNION_MACS_RATIO,  # = FLOPs ratio
    "_score": FEASIBLE_SCORE,  # budget-feasible Decathlon score
}

MLFLOW_TAGS: tuple[str, ...] = (
    TAG_PARENT_RUN, TAG_SWEEP_ID, TAG_ROLE, TAG_TRIAL_ID, TAG_PRESET, TAG_MODE, TAG_OBJECTIVE, TAG_BUDGET,
    TAG_SHARING, TAG_OPTUNA_STUDY, TAG_OPTUNA_TRIAL, TAG_RESTARTS, TAG_ORPHANED, TAG_PREVIOUS_TRIAL,
    TAG_STOPPED_EARLY, TAG_ERROR, TAG_TRAIN_DIR, TAG_RESUMED_AT, TAG_NODES, TAG_LATENCY_RETIMED,
)

# ---------------------------------------------------------------------------------------------------------------
# A sweep trial's config: keys the sweep adds beside the TrainConfig fields; Optuna user attributes
# ---------------------------------------------------------------------------------------------------------------
OPTUNA_TRIAL_KEY = "optuna_trial"  # the Optuna trial number
OPTUNA_STUDY_KEY = "optuna_study"  # the study name
RESUME_TRIAL_KEY = "resume_trial"  # set when a new Tune trial adopts an Optuna trial a dead driver's trial ran
TRIAL_META_KEYS: tuple[str, ...] = (OPTUNA_TRIAL_KEY, OPTUNA_STUDY_KEY, RESUME_TRIAL_KEY)

ATTR_TUNE_TRIAL = "tune_trial_id"  # the Ray Tune trial id that ran this Optuna trial
ATTR_PREVIOUS_TUNE_TRIAL = "previous_tune_trial_id"  # set on adoption: the dead driver's Tune trial id
ATTR_STOPPED_AT_EPOCH = "stopped_at_epoch"  # a trial stopped early (PRUNED): the epoch it stopped at
ATTR_FAIL_REASON = "fail_reason"

# MLflow params (TrainConfig fields, logged with every trial) that the analysis reads.
PARAM_BUDGET_COST = "budget_cost"  # the unit the trial's budget bounds: params | macs | switches

# ---------------------------------------------------------------------------------------------------------------
# Defaults shared by the sweep (where it writes) and the analysis (where it reads)
# ---------------------------------------------------------------------------------------------------------------
DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
DEFAULT_EXPERIMENT = "decathlon"


def param_text(config: Mapping[str, Any], prefix: str = "", max_len: int | None = None) -> dict[str, str]:
    """A nested configuration as MLflow params: nested keys joined with ``.``, lists as JSON, others ``str()``.

    The sweep logs a trial's configuration with it and the analysis reads Tune's ``params.json`` through it, so both
    sources give the same text; ``max_len`` truncates values to a tracking server's limit.
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(param_text(value, name + ".", max_len))
        else:
            text = json.dumps(value) if isinstance(value, list | tuple) else str(value)
            out[name] = text if max_len is None else text[:max_len]
    return out
