"""Size of the unpruned multi-domain network, the second landmark of the Pareto plots (the first is ratio 1.0).

Ratios in the trial table are in units of *one single-domain network of the sweep's architecture with its head*
(the ResNet-26 on the Decathlon, a torchvision ResNet on ImageNet-to-Sketch). The unpruned multi-domain
model -- every switch on -- shares that backbone but carries every domain's BNs and head, so its union params
ratio is above 1 (e.g. 1.017 for five Decathlon domains at width 1, far more for the tiny smoke models whose heads
weigh more than their convolutions). Its union MACs ratio is exactly 1: one image goes through the same
convolutions and the largest head. For one domain its params and MACs ratios are exactly 1 as well: that domain's
path through the unpruned model *is* the single-domain network.

Training counts it (``bap.cost.unpruned_cost``) and reports it every epoch as the flat metrics ``unpruned_params``
and ``unpruned_macs`` (:mod:`bap.metrics`), so it is read here from the trial table, beside the reference size the
table recovers from the union ratios (``reference_params`` / ``reference_macs``): no model is rebuilt and no torch
is needed. Sweeps written before those metrics were logged have no such columns; the report then marks only the
single-domain baseline and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.table import FINISHED, REFERENCE_MACS, REFERENCE_PARAMS
from bap import metrics as M

__all__ = ["NOT_LOGGED", "ModelCosts", "model_costs"]

NOT_LOGGED = ("the unpruned multi-domain model is not marked: these trials were written before unpruned costs were "
              f"logged (no {M.UNPRUNED_PARAMS} / {M.UNPRUNED_MACS} metrics).")
_COLUMNS = (REFERENCE_PARAMS, REFERENCE_MACS, M.UNPRUNED_PARAMS, M.UNPRUNED_MACS)
_TOLERANCE = 1e-3  # relative: the trials of one architecture agree on these counts exactly


@dataclass(frozen=True)
class ModelCosts:
    """Costs of the sweep's architecture (params, MACs per image).

    Attributes:
        reference_params: One single-domain network with the largest head (the unit of the union ratios).
        reference_macs: Its MACs.
        unpruned_params: The multi-domain model with every switch on: all domains' BNs and heads.
        unpruned_macs: Its MACs for one image (largest head).
    """

    reference_params: int
    reference_macs: int
    unpruned_params: int
    unpruned_macs: int

    @property
    def unpruned_params_ratio(self) -> float:
        return self.unpruned_params / self.reference_params

    @property
    def unpruned_macs_ratio(self) -> float:
        return self.unpruned_macs / self.reference_macs


def model_costs(table: pd.DataFrame) -> tuple[ModelCosts | None, str | None]:
    """The sweep's reference and unpruned costs from its trial table, or why they cannot be given.

    Every trial of one architecture reports the same counts; the median is taken over the finished trials that have
    all four (over every trial that has them when none finished).

    Args:
        table: The trial table (:mod:`analysis.table`).

    Returns:
        ``(costs, None)``, or ``(None, note)`` for the report: the trials carry no unpruned costs (written before
        they were logged) or disagree on them (more than one architecture).
    """
    if not all(c in table for c in _COLUMNS):
        return None, NOT_LOGGED
    values = table[list(_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)
    complete = np.isfinite(values).all(axis=1) & (values > 0).all(axis=1)
    if not complete.any():
        return None, NOT_LOGGED
    finished = table[FINISHED].to_numpy(dtype=bool) if FINISHED in table else np.zeros(len(table), dtype=bool)
    rows = values[complete & finished] if (complete & finished).any() else values[complete]
    median = np.median(rows, axis=0)
    if np.any(np.abs(rows - median) > _TOLERANCE * median):
        return None, ("the unpruned multi-domain model is not marked: the trials disagree on its size (more than one "
                      "architecture in this table).")
    return ModelCosts(*(int(round(v)) for v in median)), None
