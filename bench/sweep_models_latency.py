"""Latency of the pruned models a sweep actually produced, against their MACs ratio: exact and rounded channel counts.

For every finished trial of a Ray Tune sweep folder (``<storage>/<sweep>/trial_*/train/``: ``pruned/`` and
``metrics.json``), ``bap.latency.measure_latency`` times each domain's deployable network beside its unpruned twin
(BNs folded, channels-last, the machine's threads or ``--threads``), once with the live channel counts exactly
(``channel_multiple=None``) and once padded to multiples of 8 (what every trial reports), and prints the slowest
domain's latency ratio next to the trial's union MACs ratio (the goal: latency ratio within 1.15x of it, batch 64).

    python sweeps/decathlon.py --preset demo && python bench/sweep_models_latency.py ray_results/demo-*
    python bench/sweep_models_latency.py --smoke     # a smoke sweep's folder made on the spot (tests: seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import bap
from bap import metrics as M
from bap.latency import measure_latency

REPO = Path(__file__).resolve().parents[1]


def trial_folders(sweep: Path) -> list[Path]:
    return sorted(t / M.TRAIN_DIR for t in sweep.glob("trial_*")
                  if (t / M.TRAIN_DIR / M.PRUNED_DIR / M.ARCHITECTURE_FILE).is_file()
                  and (t / M.TRAIN_DIR / M.METRICS_FILE).is_file())


def smoke_sweep(root: Path) -> Path:
    """A two-trial smoke sweep (offline, tiny), in ``root``."""
    command = [sys.executable, str(REPO / "sweeps" / "decathlon.py"), "--preset", "smoke", "--budgets", "0.25,0.75",
               "--no-asha", "--epochs", "1", "--name", "latency", "--storage-path", str(root / "ray_results"),
               "--tracking-uri", f"sqlite:///{root}/mlruns.db", "--optuna-storage", str(root / "optuna.log"),
               "-v", "0"]
    subprocess.run(command, check=True, cwd=root, stdout=subprocess.DEVNULL)
    return root / "ray_results" / "latency"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", nargs="?", type=Path, help="a sweep's Tune folder (<storage>/<sweep name>)")
    parser.add_argument("--smoke", action="store_true", help="run a tiny smoke sweep first and time its models")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument("--min-time-s", type=float, default=0.6, help="seconds per network and batch size")
    args = parser.parse_args()
    if (args.sweep is None) == (not args.smoke):
        parser.error("give a sweep folder or --smoke")
    scratch = tempfile.TemporaryDirectory(prefix="sweep_models_latency_") if args.smoke else None
    sweep = smoke_sweep(Path(scratch.name)) if scratch else args.sweep
    folders = trial_folders(sweep)
    if not folders:
        sys.exit(f"error: no finished trial with a pruned model under {sweep}")
    threads = args.threads or os.cpu_count() or 1
    load = os.getloadavg()
    print(f"torch {torch.__version__}, {threads} threads, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{len(folders)} trials of {sweep.name}, {args.min_time_s} s per network and batch size")
    print("\n| trial | budget | union MACs ratio | latency ratio b1, exact / x8 | latency ratio b64, exact / x8 | "
          "b64 x8 / MACs ratio |")
    print("|---|---|---|---|---|---|")
    quotients = []
    for folder in folders:
        result = json.loads((folder / M.METRICS_FILE).read_text())
        model = bap.load_pruned(folder / M.PRUNED_DIR).eval()
        size = tuple(result[M.JSON_INPUT_SIZE])
        macs = result[M.JSON_UNION][M.COST_MACS_RATIO]
        timed = {multiple: measure_latency(model, size, threads=threads, min_time_s=args.min_time_s,
                                           channel_multiple=multiple) for multiple in (None, 8)}
        b1, b64 = (M.latency_metric("cpu", b, M.LATENCY_RATIO) for b in M.LATENCY_BATCHES)
        quotient = timed[8][b64] / macs
        quotients.append(quotient)
        print(f"| {folder.parent.name.removeprefix('trial_')} | {result[M.BUDGET]:g} | {macs:.3f} | "
              f"{timed[None][b1]:.2f} / {timed[8][b1]:.2f} | {timed[None][b64]:.2f} / {timed[8][b64]:.2f} | "
              f"{quotient:.2f} |")
    print(f"\nmedian latency ratio / MACs ratio at batch 64 (x8): {statistics.median(quotients):.2f} (goal <= 1.15)")
    if scratch:
        scratch.cleanup()


if __name__ == "__main__":
    main()
