"""Sweep analysis: read a sweep's trials (MLflow or Ray Tune) into a table, compute Pareto fronts and hypervolumes of
accuracy against params and MACs, and write the report (PNG, HTML, Markdown) -- ``python -m analysis.report``.

Modules, in the order data flows: :mod:`analysis.load` (MLflow / Tune -> records) -> :mod:`analysis.table` (the trial
table, Parquet) -> :mod:`analysis.pareto` (fronts, hypervolume) -> :mod:`analysis.fronts` (per target and budget) ->
:mod:`analysis.plots` / :mod:`analysis.summary` (renderers) -> :mod:`analysis.report` (CLI, ``build_report``).
Heavy dependencies (MLflow, matplotlib, plotly) are imported only where used; torch only by
:mod:`analysis.synthetic` when it writes a sweep (reading and reporting need none).
"""

from analysis.errors import AnalysisError
from analysis.fronts import ParetoData, Target, pareto_data
from analysis.load import find_sweep, load_mlflow, load_tune
from analysis.pareto import (
    fronts_by_group,
    hypervolume,
    hypervolume_by_group,
    pareto_front_2d,
    pareto_mask,
    reference_point,
)
from analysis.table import build_table, read_parquet, to_parquet

__all__ = [
    "AnalysisError",
    "ParetoData",
    "Target",
    "build_table",
    "find_sweep",
    "fronts_by_group",
    "hypervolume",
    "hypervolume_by_group",
    "load_mlflow",
    "load_tune",
    "pareto_data",
    "pareto_front_2d",
    "pareto_mask",
    "read_parquet",
    "reference_point",
    "to_parquet",
]
