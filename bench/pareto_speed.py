"""Speed of Pareto fronts and hypervolumes at report scale: 100,000 trials x 10 domains.

Synthetic trials look like a budget sweep: a budget from a coarse grid sets each domain's parameter and MAC
ratios (in single-domain backbones), accuracy grows with parameters plus noise, and values are quantised the way
real logs are (accuracies on a finite validation set, costs from discrete channel counts), so there are many
ties; a share of trials are exact repeats. The workload is what the report computes:

* per domain (long format, ``by="domain"``): the 2-D front of accuracy vs params ratio and vs MACs ratio, and
  the two matching 2-D hypervolumes;
* over trials: the 3-objective front and hypervolume of mean accuracy, union params ratio and union MACs ratio.

Each step is timed with ``time.perf_counter`` (best of 3). The goal is a total under 2 s; the script prints PASS
or FAIL against it and always exits 0 (a benchmark, not a test). ``--stress`` adds worst cases (every point on
the front, structureless clouds) outside the goal; ``--append`` appends the tables to ``bench/RESULTS.md``.

Run: ``.venv/bin/python bench/pareto_speed.py [--trials 100000] [--stress] [--append]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.pareto import fronts_by_group, hypervolume, hypervolume_by_group, pareto_mask, reference_point
from bap.metrics import (
    MACS_RATIO,
    MEAN_VAL_ACC,
    PARAMS_RATIO,
    UNION_MACS_RATIO,
    UNION_PARAMS_RATIO,
    VAL_ACC,
    domain_metric,
)

DOMAINS = (
    "imagenet12",
    "aircraft",
    "cifar100",
    "daimlerpedcls",
    "dtd",
    "gtsrb",
    "omniglot",
    "svhn",
    "ucf101",
    "vgg-flowers",
)
GOAL_S = 2.0
RESULTS = Path(__file__).with_name("RESULTS.md")


def synthetic_trials(n_trials: int, seed: int = 0) -> pd.DataFrame:
    """One row per trial, wide like ``analysis.load``: ``val_acc/<domain>``, ``params_ratio/<domain>``, ..."""
    rng = np.random.default_rng(seed)
    budget = rng.choice(np.linspace(0.1, 1.0, 10), size=n_trials)
    columns: dict[str, np.ndarray] = {}
    accs, params, macs = [], [], []
    for domain in DOMAINS:
        # Costs come from discrete channel counts: quantise to 1/1000 of a backbone.
        p = np.clip(budget * rng.uniform(0.7, 1.05, n_trials) + rng.normal(0, 0.02, n_trials), 0.01, 1.0)
        p = np.round(p, 3)
        m = np.round(np.clip(p**0.85 * rng.uniform(0.9, 1.1, n_trials), 0.01, 1.0), 3)
        # Accuracy saturates with parameters; measured on a finite validation set (ties).
        ceiling = rng.uniform(0.55, 0.98)
        acc = ceiling * (1 - np.exp(-p / rng.uniform(0.08, 0.3))) + rng.normal(0, 0.02, n_trials)
        n_val = int(rng.integers(500, 5000))
        acc = np.round(np.clip(acc, 0.0, 1.0) * n_val) / n_val
        columns[domain_metric(VAL_ACC, domain)] = acc
        columns[domain_metric(PARAMS_RATIO, domain)] = p
        columns[domain_metric(MACS_RATIO, domain)] = m
        accs.append(acc)
        params.append(p)
        macs.append(m)
    columns[MEAN_VAL_ACC] = np.round(np.mean(accs, axis=0), 4)
    # The union keeps what any domain keeps: at least the largest domain, plus some non-shared channels.
    columns[UNION_PARAMS_RATIO] = np.round(np.minimum(np.max(params, axis=0) * 1.05, 1.0), 3)
    columns[UNION_MACS_RATIO] = np.round(np.max(macs, axis=0), 3)
    trials = pd.DataFrame(columns)
    repeats = rng.integers(0, n_trials, size=n_trials // 20)  # 5 % of trials repeat an earlier result exactly
    trials.iloc[repeats[: len(repeats) // 2]] = trials.iloc[repeats[len(repeats) // 2 :]].to_numpy()
    trials.index.name = "trial"
    return trials


def per_domain_long(trials: pd.DataFrame) -> pd.DataFrame:
    """Long format: one row per (trial, domain) with ``domain``, ``val_acc``, ``params_ratio``, ``macs_ratio``."""
    n = len(trials)
    domain_codes = np.repeat(np.arange(len(DOMAINS), dtype=np.int8), n)
    return pd.DataFrame(
        {
            "trial": np.tile(trials.index.to_numpy(), len(DOMAINS)),
            "domain": pd.Categorical.from_codes(domain_codes, categories=DOMAINS),
            **{
                name: np.concatenate([trials[domain_metric(name, d)].to_numpy() for d in DOMAINS])
                for name in (VAL_ACC, PARAMS_RATIO, MACS_RATIO)
            },
        }
    )


def best_of(fn: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run(n_trials: int) -> tuple[list[tuple[str, float, str]], float]:
    trials = synthetic_trials(n_trials)
    reshape_s, long = best_of(lambda: per_domain_long(trials))
    acc_params = {VAL_ACC: "max", PARAMS_RATIO: "min"}
    acc_macs = {VAL_ACC: "max", MACS_RATIO: "min"}
    union = {MEAN_VAL_ACC: "max", UNION_PARAMS_RATIO: "min", UNION_MACS_RATIO: "min"}
    steps = [
        ("front acc vs params, per domain", lambda: fronts_by_group(long, acc_params, by="domain")),
        ("front acc vs MACs, per domain", lambda: fronts_by_group(long, acc_macs, by="domain")),
        (
            "hypervolume acc vs params, per domain",
            lambda: hypervolume_by_group(long, acc_params, reference_point(acc_params), by="domain"),
        ),
        (
            "hypervolume acc vs MACs, per domain",
            lambda: hypervolume_by_group(long, acc_macs, reference_point(acc_macs), by="domain"),
        ),
        ("front mean acc / params / MACs (3-D)", lambda: fronts_by_group(trials, union)),
        (
            "hypervolume mean acc / params / MACs (3-D)",
            lambda: hypervolume_by_group(trials, union, reference_point(union)),
        ),
    ]
    rows = []
    for name, fn in steps:
        seconds, result = best_of(fn)
        if result.dtype == bool:
            detail = f"{int(result.sum())} on front"
        else:
            detail = (
                f"HV {result.min():.4f}..{result.max():.4f}"
                if len(result) > 1
                else f"HV {result.iloc[0]:.4f}"
            )
        rows.append((name, seconds, detail))
    return rows, reshape_s


def stress(seed: int = 0) -> list[tuple[str, float, str]]:
    """Worst cases, not part of the goal: every point on the front, or uniform clouds with no structure."""
    rng = np.random.default_rng(seed)
    simplex = rng.dirichlet(np.ones(3), size=100_000)  # all on the 3-D front
    line = rng.random(1_000_000)
    line = np.column_stack([line, 1 - line])  # all on the 2-D front
    cube = rng.random((1_000_000, 3))
    cube4 = rng.random((100_000, 4))
    cases = [
        ("2-D front, 10^6 points all on it", lambda: pareto_mask(line, "min")),
        ("2-D hypervolume, 10^6 points all on the front", lambda: hypervolume(line, "min", (1.1, 1.1))),
        ("3-D front, 10^5 points all on it", lambda: pareto_mask(simplex, "min")),
        ("3-D hypervolume, 10^5 points all on the front", lambda: hypervolume(simplex, "min", (1.0,) * 3)),
        ("3-D front, 10^6 uniform points", lambda: pareto_mask(cube, "min")),
        ("3-D hypervolume, 10^6 uniform points", lambda: hypervolume(cube, "min", (1.0,) * 3)),
        ("4-D front, 10^5 uniform points", lambda: pareto_mask(cube4, "min")),
    ]
    rows = []
    for name, fn in cases:
        seconds, result = best_of(fn)
        detail = f"{int(np.sum(result))} on front" if isinstance(result, np.ndarray) else f"HV {result:.4f}"
        rows.append((name, seconds, detail))
    return rows


def format_table(rows: list[tuple[str, float, str]], total: float | None = None) -> str:
    lines = ["| step | best of 3 (ms) | result |", "|---|---:|---|"]
    lines += [f"| {name} | {seconds * 1e3:.1f} | {detail} |" for name, seconds, detail in rows]
    if total is not None:
        lines.append(
            f"| **total** | **{total * 1e3:.1f}** | goal < {GOAL_S * 1e3:.0f} ms: {verdict(total)} |"
        )
    return "\n".join(lines)


def verdict(total: float) -> str:
    return "PASS" if total < GOAL_S else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--append", action="store_true", help=f"append the table to {RESULTS}")
    parser.add_argument("--stress", action="store_true", help="also time worst cases (not part of the goal)")
    args = parser.parse_args()

    rows, reshape_s = run(args.trials)
    total = sum(seconds for _, seconds, _ in rows)
    table = format_table(rows, total)
    print(f"{args.trials} trials x {len(DOMAINS)} domains ({args.trials * len(DOMAINS)} per-domain rows)")
    print(table)
    print(f"(not counted: wide -> long reshape {reshape_s * 1e3:.1f} ms)")
    print(f"{verdict(total)}: total {total:.3f} s against the {GOAL_S:.0f} s goal")
    stress_table = ""
    if args.stress:
        stress_table = format_table(stress())
        print("\nWorst cases (not part of the goal):")
        print(stress_table)
    if args.append:
        append_results(args, table, reshape_s, stress_table)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def append_results(args: argparse.Namespace, table: str, reshape_s: float, stress_table: str) -> None:
    """Append a dated section under the heading "Pareto fronts and hypervolume" (written once)."""
    existing = RESULTS.read_text() if RESULTS.exists() else ""
    flags = " --stress" * bool(stress_table) + (f" --trials {args.trials}" if args.trials != 100_000 else "")
    parts = [] if existing else ["# Benchmark results\n"]
    headings = [line for line in existing.splitlines() if line.startswith("## ")]
    if not headings or headings[-1] != "## Pareto fronts and hypervolume":  # our section must be the last one
        parts.append(
            "\n## Pareto fronts and hypervolume\n\n"
            "`bench/pareto_speed.py`: `analysis.pareto` on synthetic sweep trials (see the script's docstring). "
            f"Goal: the report's workload in under {GOAL_S:.0f} s in total.\n"
        )
    parts.append(
        f"\n### {dt.date.today().isoformat()}: {args.trials} trials x {len(DOMAINS)} domains\n\n"
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), Python {platform.python_version()}, "
        f"NumPy {np.__version__}, pandas {pd.__version__}. "
        f"Command: `.venv/bin/python bench/pareto_speed.py{flags} --append`.\n\n"
        f"{table}\n\nNot counted: wide -> long reshape, {reshape_s * 1e3:.1f} ms.\n"
    )
    if stress_table:
        parts.append(f"\nWorst cases (`--stress`, not part of the goal):\n\n{stress_table}\n")
    with RESULTS.open("a") as results:
        results.write("".join(parts))
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
