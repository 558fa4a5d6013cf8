"""The vocabulary shared by the training run, the sweep and the analysis.

Every metric name, ``metrics.json`` key and MLflow tag that crosses a package boundary is defined here once, so a
renamed metric breaks a test instead of a report three steps downstream. Costs are counted in parameters and MACs
(multiply-accumulates; 1 MAC = 2 FLOPs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Flat scalar metrics reported once per epoch (Ray Tune / MLflow) and stored in metrics.json.
EPOCH = "epoch"
BUDGET = "budget"
MEAN_VAL_ACC = "mean_val_acc"  # mean over domains of top-1 val accuracy, in [0, 1]
SCORE = "score"  # Decathlon score on the val split (max 1000 per domain)
UNION_PARAMS = "union_params"  # parameters of the pruned network (all domains), absolute
UNION_MACS = "union_macs"  # MACs per image of the pruned network (worst domain), absolute
UNION_PARAMS_RATIO = "union_params_ratio"  # relative to one single-domain ResNet-26 with its head
UNION_MACS_RATIO = "union_macs_ratio"
PRUNED_AGREEMENT = "pruned_agreement"  # fraction of val predictions where pruned == switched
TRAIN_LOSS = "train_loss"  # mean total loss over the epoch
SHARING_LOSS = "sharing_loss"
SHARING_WEIGHT = "sharing_weight"
ENFORCED_SWITCHES_OFF = "enforced_switches_off"  # switches turned off by the final budget enforcement

# Per-domain metrics: domain_metric("val_acc", "svhn") -> "val_acc/svhn".
VAL_ACC = "val_acc"
TEST_ACC = "test_acc"
DOMAIN_TRAIN_LOSS = "train_loss"
USAGE = "usage"  # fraction of the domain's switch cost that is on, in the unit of the budget
SWITCHES_ON = "switches_on"  # plain fraction of the domain's switches that are on
PARAMS = "params"
MACS = "macs"
PARAMS_RATIO = "params_ratio"
MACS_RATIO = "macs_ratio"
DUAL = "dual"  # Lagrange multiplier of the domain's budget constraint

PER_DOMAIN = (VAL_ACC, DOMAIN_TRAIN_LOSS, USAGE, SWITCHES_ON, PARAMS, MACS, PARAMS_RATIO, MACS_RATIO, DUAL)


def domain_metric(name: str, domain: str) -> str:
    """Flat metric key of a per-domain metric, e.g. ``domain_metric("val_acc", "svhn") == "val_acc/svhn"``."""
    return f"{name}/{domain}"


def split_domain_metric(key: str) -> tuple[str, str] | None:
    """Inverse of :func:`domain_metric`: ``"val_acc/svhn" -> ("val_acc", "svhn")``; None for a flat key."""
    name, sep, domain = key.partition("/")
    return (name, domain) if sep else None


# metrics.json layout (written by bap.train, read by sweeps/ and analysis/).
METRICS_FILE = "metrics.json"
JSON_DOMAINS = "domains"  # {domain: {val_acc, usage, params, macs, ...}}
JSON_UNION = "union"  # {params, macs, params_ratio, macs_ratio}
JSON_REFERENCE = "reference"  # {params, macs}: one single-domain ResNet-26 with its head
JSON_CONFIG = "config"

# MLflow tags that mark sweep structure.
TAG_SWEEP_ID = "bap.sweep_id"
TAG_ROLE = "bap.role"  # "sweep" (parent) or "trial" (child)
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
TAG_TRIAL_ID = "bap.trial_id"  # Ray Tune trial id
TAG_PRESET = "bap.preset"
TAG_BUDGET = "bap.budget"
TAG_SHARING = "bap.sharing"


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
