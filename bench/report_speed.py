"""Speed of the whole report pipeline at sweep scale: 100,000 trials x 10 domains (a benchmark, not a test).

``bench/pareto_speed.py`` times the raw front/hypervolume kernels; this times what ``python -m analysis.report`` does
with a loaded sweep, step by step:

* ``build_table``: loader records (one dict of latest metrics per trial, as MLflow/Tune give them) -> trial table;
* ``pareto_data``: every target (10 domains, mean, score) x 3 objective sets (acc vs params, vs MACs, 3-D), fronts
  and hypervolumes across budgets and per budget group (the data step; goal: under 2 s);
* ``model_costs`` (the unpruned landmark, read from the table), ``figure_data`` for every target and
  ``summary_data`` (the rest of the data step);
* rendering: one PNG, the interactive HTML page (dominated points sampled to 5,000 per target).

Trials come from ``bench/pareto_speed.py``'s generator (quantised, tie-heavy, 5 % exact repeats), plus absolute costs,
a score and finished flags. Reading 100,000 runs from a tracking server is not timed (it is network bound).

Run: ``.venv/bin/python bench/report_speed.py [--trials 100000] [--append]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.fronts import pareto_data  # noqa: E402
from analysis.plots import figure_data, render_html, render_png  # noqa: E402
from analysis.summary import summary_data  # noqa: E402
from analysis.table import TrialRecord, build_table  # noqa: E402
from analysis.unpruned import model_costs  # noqa: E402
from bap import metrics as M  # noqa: E402
from bench.pareto_speed import DOMAINS, synthetic_trials  # noqa: E402

GOAL_S = 2.0
RESULTS = Path(__file__).with_name("RESULTS.md")
REFERENCE_PARAMS, REFERENCE_MACS = 6.07e6, 8.53e8
UNPRUNED_PARAMS = 6.17e6


def records(n_trials: int) -> list[TrialRecord]:
    """Loader records: the kernel benchmark's trials plus absolute costs, score, budget and final metrics."""
    trials = synthetic_trials(n_trials)
    rng = np.random.default_rng(1)
    for d in DOMAINS:
        trials[M.domain_metric(M.PARAMS, d)] = np.round(trials[M.domain_metric(M.PARAMS_RATIO, d)] * 5.9e6)
        trials[M.domain_metric(M.MACS, d)] = np.round(trials[M.domain_metric(M.MACS_RATIO, d)] * 8.5e8)
    trials[M.UNION_PARAMS] = np.round(trials[M.UNION_PARAMS_RATIO] * REFERENCE_PARAMS)
    trials[M.UNION_MACS] = np.round(trials[M.UNION_MACS_RATIO] * REFERENCE_MACS)
    trials[M.SCORE] = np.round(trials[M.MEAN_VAL_ACC] * 4000)
    trials[M.BUDGET] = np.round(trials[M.UNION_PARAMS_RATIO].clip(0.1, 1.0), 1)
    trials[M.EPOCH] = 10.0
    trials[M.PRUNED_AGREEMENT] = np.where(rng.random(n_trials) < 0.9, 1.0, np.nan)
    trials[M.UNPRUNED_PARAMS] = UNPRUNED_PARAMS  # reported every epoch by training: one architecture, one size
    trials[M.UNPRUNED_MACS] = REFERENCE_MACS
    rows = trials.to_dict("records")
    return [TrialRecord("bench", f"t{i:06d}", "FINISHED", {k: v for k, v in row.items() if v == v},
                        {"lr": str(rng.uniform(0.01, 0.1)), "sharing": "union"})
            for i, row in enumerate(rows)]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run(n_trials: int) -> list[tuple[str, float, str]]:
    recs = records(n_trials)
    rows: list[tuple[str, float, str]] = []
    seconds, table = timed(lambda: build_table(recs))
    rows.append(("build_table (records -> trial table)", seconds, f"{table.shape[0]} x {table.shape[1]}"))
    best = float("inf")
    for _ in range(3):
        seconds, data = timed(lambda: pareto_data(table))
        best = min(best, seconds)
    rows.append(("pareto_data: 12 targets x 3 objective sets, all + per budget", best,
                 f"{len(data.points)} points, {len(data.hypervolumes)} volumes"))
    seconds, (model, _) = timed(lambda: model_costs(table))
    rows.append(("model_costs (the unpruned landmark, from the table)", seconds, "found" if model else "none"))
    seconds, figures = timed(lambda: [figure_data(data, t.name, table=table, model=model) for t in data.targets])
    rows.append(("figure_data, every target (with hover texts)", seconds, f"{len(figures)} figures"))
    seconds, _ = timed(lambda: summary_data(table, data, title="bench", source="bench", model=model))
    rows.append(("summary_data", seconds, ""))
    with tempfile.TemporaryDirectory() as tmp:
        seconds, _ = timed(lambda: render_png(figures[0], Path(tmp) / "a.png"))
        rows.append(("render_png, one target", seconds, ""))
        seconds, path = timed(lambda: render_html(figures, Path(tmp) / "p.html"))
        rows.append(("render_html, every target", seconds, f"{path.stat().st_size / 1e6:.1f} MB"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--append", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    rows = run(args.trials)
    goal = rows[1][1] < GOAL_S
    lines = [
        "",
        f"## Report pipeline ({dt.date.today()}: {args.trials} trials x {len(DOMAINS)} domains)",
        "",
        f"`bench/report_speed.py`. Machine: {os.cpu_count()} CPU cores, Python {platform.python_version()}.",
        "",
        "| step | s | result |",
        "|---|---:|---|",
        *[f"| {name} | {seconds:.2f} | {result} |" for name, seconds, result in rows],
        "",
        f"Goal for the data step (`pareto_data`) < {GOAL_S:g} s: {'PASS' if goal else 'FAIL'}.",
    ]
    print("\n".join(lines))
    if args.append:
        with RESULTS.open("a") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
