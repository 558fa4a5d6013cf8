"""Fidelity of the method on the offline mini-decathlon: budgets x sharing losses at the default run length.

For every cell (budget, sharing loss, seed) one ``bap.train.train`` run with the shipped defaults (10 epochs,
width 0.25, 1 block, parameter-weighted budget), several runs at once in separate processes (one torch thread
each). The table: mean and per-domain val accuracy, union params and MACs ratios (x one single-domain network with
its head), Decathlon score, switches cut by the final enforcement. Cells with several seeds show the median (and
the range). Then the goals of the fidelity issue, each PASS or FAIL with its numbers (a benchmark: it always exits 0).

Run::

    .venv/bin/python bench/fidelity.py                        # the full grid, 1 seed, + the goal cells with 3 seeds
    .venv/bin/python bench/fidelity.py --quick                # the goal cells only, 1 seed
    .venv/bin/python bench/fidelity.py --budgets 0.5 --sharing jaccard,none --seeds 0,1,2 --set epochs=3
    .venv/bin/python bench/fidelity.py --append               # also append the tables to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bap import metrics as M  # noqa: E402

BUDGETS = (0.25, 0.5, 0.75, 1.0)
SHARING = ("none", "union", "intersection", "jaccard")
GOAL_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Cell:
    budget: float
    sharing: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.overrides)
        return f"budget {self.budget:g} {self.sharing} seed {self.seed}{' ' + extra if extra else ''}"


@dataclass
class Outcome:
    cell: Cell
    mean_acc: float
    accs: dict[str, float]
    params_ratio: float
    macs_ratio: float
    score: float | None
    enforced: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def run_cell(cell: Cell, cache_dir: str | None) -> Outcome:
    """One training run (in a worker process, one torch thread)."""
    import torch

    from bap.config import TrainConfig
    from bap.train import train

    torch.set_num_threads(1)
    values: dict[str, Any] = {"budget": cell.budget, "sharing": cell.sharing, "seed": cell.seed, "device": "cpu",
                              **dict(cell.overrides)}
    if cache_dir:
        values["cache_dir"] = cache_dir
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bap-fidelity-") as out:
        result = train(TrainConfig.from_dict(values), out)
    union = result[M.JSON_UNION]
    return Outcome(cell, result[M.MEAN_VAL_ACC], {d: v[M.VAL_ACC] for d, v in result[M.JSON_DOMAINS].items()},
                   union[M.COST_PARAMS_RATIO], union[M.COST_MACS_RATIO], result[M.SCORE],
                   int(result[M.ENFORCED_SWITCHES_OFF]), time.perf_counter() - started, result[M.JSON_HISTORY])


def run_all(cells: Sequence[Cell], jobs: int, cache_dir: str | None) -> list[Outcome]:
    warm = run_cell(cells[0], cache_dir)  # pretrains (and caches) the shared backbone once, before the pool
    print(f"  {warm.cell.label}: mean acc {warm.mean_acc:.3f}  ({warm.seconds:.0f} s)", flush=True)
    outcomes = [warm]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_cell, cell, cache_dir) for cell in cells[1:]]
        for future in futures:
            outcome = future.result()
            print(f"  {outcome.cell.label}: mean acc {outcome.mean_acc:.3f}  params {outcome.params_ratio:.3f}x  "
                  f"MACs {outcome.macs_ratio:.3f}x  cut {outcome.enforced}  ({outcome.seconds:.0f} s)", flush=True)
            outcomes.append(outcome)
    return outcomes


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _cell_text(values: Sequence[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{_median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def group(outcomes: Sequence[Outcome]) -> dict[tuple[float, str, tuple], list[Outcome]]:
    out: dict[tuple[float, str, tuple], list[Outcome]] = {}
    for o in outcomes:
        out.setdefault((o.cell.budget, o.cell.sharing, o.cell.overrides), []).append(o)
    return out


def table(outcomes: Sequence[Outcome]) -> str:
    groups = group(outcomes)
    domains = sorted({d for o in outcomes for d in o.accs})
    head = ["budget", "sharing", "seeds", "mean acc", *domains, "union params", "union MACs", "score", "cut"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (budget, sharing, overrides), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        scores = [o.score for o in runs if o.score is not None]
        label = sharing + ("".join(f" {k}={v}" for k, v in overrides))
        row = [f"{budget:g}", label, str(len(runs)), _cell_text([o.mean_acc for o in runs]),
               *(f"{_median([o.accs[d] for o in runs]):.3f}" for d in domains),
               _cell_text([o.params_ratio for o in runs]) + "x", _cell_text([o.macs_ratio for o in runs]) + "x",
               f"{_median(scores):.0f}" if scores else "-", f"{_median([o.enforced for o in runs]):.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def goals(outcomes: Sequence[Outcome], default_sharing: str) -> list[str]:
    """The fidelity goals (medians over seeds) that these outcomes can judge."""
    groups = {(b, s): runs for (b, s, o), runs in group(outcomes).items() if not o}
    out = []

    def med(budget: float, sharing: str, attr: str) -> float | None:
        runs = groups.get((budget, sharing))
        return _median([getattr(o, attr) for o in runs]) if runs else None

    half, full, quarter = med(0.5, default_sharing, "mean_acc"), med(1.0, default_sharing, "mean_acc"), \
        med(0.25, default_sharing, "mean_acc")
    params, macs = med(0.5, default_sharing, "params_ratio"), med(0.5, default_sharing, "macs_ratio")
    unshared = med(0.5, "none", "params_ratio")
    if half is not None and params is not None and macs is not None:
        ok = params <= 0.65 and macs <= 0.80
        out.append(f"{'PASS' if ok else 'FAIL'} budget 0.5 ({default_sharing}): union params {params:.3f}x <= 0.65x "
                   f"and union MACs {macs:.3f}x <= 0.80x")
    if half is not None and full is not None:
        out.append(f"{'PASS' if half >= full - 0.04 else 'FAIL'} budget 0.5 mean acc {half:.3f} within 4 points of "
                   f"budget 1.0's {full:.3f}")
    if params is not None and unshared is not None:
        out.append(f"{'PASS' if unshared - params >= 0.15 else 'FAIL'} without a sharing loss the union is larger by "
                   f"{unshared - params:.3f}x (>= 0.15x): {unshared:.3f}x vs {params:.3f}x")
    if quarter is not None:
        out.append(f"{'PASS' if quarter >= 0.75 else 'FAIL'} budget 0.25 mean acc {quarter:.3f} >= 0.75")
    if half is not None and full is not None and params is not None:
        out.append(f"{'MET' if params <= 0.6 and half >= full - 0.02 else 'not met'} (moonshot) budget 0.5: union "
                   f"params {params:.3f}x <= 0.6x with accuracy within 2 points ({full - half:+.3f})")
    return out


def short_run_goal(outcomes: Sequence[Outcome]) -> list[str]:
    out = []
    for overrides, runs in sorted(group([o for o in outcomes if o.cell.budget == 0.5]).items()):
        acc, params = _median([o.mean_acc for o in runs]), _median([o.params_ratio for o in runs])
        ok = acc >= 0.80 and params <= 0.85
        length = " ".join(f"{k}={v}" for k, v in overrides[2])
        out.append(f"{'PASS' if ok else 'FAIL'} short run ({length}) at budget 0.5: mean acc {acc:.3f} >= 0.80 and "
                   f"union params {params:.3f}x <= 0.85x (within budget: the enforcement guarantees it)")
    return out


def parse_overrides(items: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    import yaml

    out = []
    for item in items:
        key, _, value = item.partition("=")
        out.append((key, yaml.safe_load(value)))
    return tuple(out)


def cells_for(budgets: Sequence[float], sharing: Sequence[str], seeds: Sequence[int],
              overrides: tuple[tuple[str, Any], ...]) -> list[Cell]:
    return [Cell(b, s, seed, overrides) for b in budgets for s in sharing for seed in seeds]


def default_plan(default_sharing: str, quick: bool) -> tuple[list[Cell], list[Cell]]:
    """(default-length cells, short-run cells): the full grid with one seed plus the goal cells with three."""
    goal_cells = [(0.5, default_sharing), (1.0, default_sharing), (0.25, default_sharing), (0.5, "none")]
    seeds = (0,) if quick else GOAL_SEEDS
    cells = [] if quick else cells_for(BUDGETS, SHARING, (0,), ())
    cells += [Cell(b, s, seed) for b, s in goal_cells for seed in seeds if Cell(b, s, seed) not in cells]
    short = [Cell(0.5, default_sharing, seed, (("epochs", epochs),)) for epochs in (2, 3) for seed in seeds]
    return cells, short


def report(cells_out: Sequence[Outcome], short_out: Sequence[Outcome], default_sharing: str, command: str,
           wall: float) -> str:
    lines = [f"### Fidelity on the mini-decathlon ({dt.date.today().isoformat()})", "",
             f"Command: `{command}`; machine: {platform.machine()}, {os.cpu_count()} CPUs; {wall / 60:.1f} min.", "",
             "Default length (10 epochs, width 0.25, 1 block, budget on params unless a row says budget_cost), "
             "median over seeds (range):", "", table(cells_out), ""]
    if short_out:
        lines += ["Short runs (2 and 3 epochs):", "", table(short_out), ""]
    judged = goals(cells_out, default_sharing) + short_run_goal(short_out)
    if judged:
        lines += ["Goals:", "", *(f"- {g}" for g in judged), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from bap.config import TrainConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", help="comma-separated budgets (default: the full grid and the goal cells)")
    p.add_argument("--sharing", help="comma-separated sharing losses")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (with --budgets/--sharing)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a TrainConfig override")
    p.add_argument("--quick", action="store_true", help="the goal cells only, one seed")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)), help="runs at once")
    p.add_argument("--cache-dir", default=os.environ.get("BAP_CACHE_DIR"), help="data and backbone cache")
    p.add_argument("--append", action="store_true", help="append the tables to bench/RESULTS.md")
    args = p.parse_args(argv)
    default_sharing = TrainConfig().sharing
    overrides = parse_overrides(args.set)
    if args.budgets or args.sharing:
        budgets = [float(b) for b in (args.budgets or ",".join(map(str, BUDGETS))).split(",")]
        sharing = (args.sharing or default_sharing).split(",")
        cells, short = cells_for(budgets, sharing, [int(s) for s in args.seeds.split(",")], overrides), []
    else:
        cells, short = default_plan(default_sharing, args.quick)
    started = time.perf_counter()
    cells_out = run_all(cells, args.jobs, args.cache_dir)
    short_out = run_all(short, args.jobs, args.cache_dir) if short else []
    text = report(cells_out, short_out, default_sharing, "python bench/fidelity.py " + " ".join(argv or sys.argv[1:]),
                  time.perf_counter() - started)
    print("\n" + text)
    if args.append:
        with (REPO / "bench" / "RESULTS.md").open("a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
