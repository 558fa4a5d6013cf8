"""A minimal training entry point that records the worker it ran in (``entrypoint: tests.sweeps.workers_entry``):
its pid, whether torch was imported before this module, its runtime environment, Tune's variable and its niceness."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from bap import metrics as M
from tests.sweeps.entry import TrainConfig, available_domains  # noqa: F401  (this entry point's)

TORCH_BEFORE_ENTRY = "torch" in sys.modules  # in a trial worker: imported before run_trial imported this module


def prepare(train: dict[str, Any], keep_data: bool) -> dict[str, Any]:
    return {"data": None, "domains": ["synthetic"], "pretrained": None, "backbone_bytes": None}


def train(config: TrainConfig, out_dir: str | Path, *, data: Any = None, report: Any = None,
          resume_from: Any = None) -> dict:
    import ray

    with open(config.values["log"], "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "torch_before_entry": TORCH_BEFORE_ENTRY,
                            "runtime_env": dict(ray.get_runtime_context().runtime_env),
                            "pl_disable_fork": os.environ.get("PL_DISABLE_FORK"), "niceness": os.nice(0)}) + "\n")
    budget = float(config.values.get("budget", 0.5))
    metrics = {M.EPOCH: 1.0, M.BUDGET: budget, M.MEAN_VAL_ACC: 0.5, M.FEASIBLE_MEAN_VAL_ACC: 0.5, M.SCORE: 0.0,
               M.UNION_MACS_RATIO: budget, M.UNION_PARAMS_RATIO: budget, M.UNION_MACS: 1.0, M.UNION_PARAMS: 1.0,
               M.PRUNED_AGREEMENT: 1.0}
    ckpt = Path(out_dir) / "checkpoints" / "epoch_0001"
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "epoch.txt").write_text("1")
    (Path(out_dir) / "metrics.json").write_text(json.dumps(metrics))
    if report is not None:
        report(metrics, ckpt)
    return metrics
