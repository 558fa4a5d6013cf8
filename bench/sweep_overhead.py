"""What does our sweep stack cost on top of plain multiprocessing? (a benchmark, not a test)

The same 8 fixed-work trials (a calibrated number of single-threaded torch matmuls, reported in 5 "epochs" with ~45
metrics each, like a 5-domain training run), 2 at a time, run

  (a) in a ``multiprocessing.Pool(2)`` (fork; the parent imported torch), and
  (b) through the sweep stack, as a user runs it: ``python sweeps/decathlon.py --preset smoke --config bench.yaml``
      (validation, then local Ray + Tune with reused actors and per-epoch checkpoints, Optuna with a journal file
      and per-budget studies, MLflow on SQLite with a parent run and one child run per trial), with this module as
      the training entry point. Like ``bap.train``, importing it does not import torch; a trial does.

Each variant runs in a fresh interpreter, so "whole process" is what a user waits for from ``python ...`` to the
prompt; "sweep-only" is the Pool's ``map`` versus Tune's ``fit`` (the trials plus the scheduling around them).

    python bench/sweep_overhead.py                       # ~10 s and ~2 s trials, prints ratios b/a and a breakdown
    python bench/sweep_overhead.py --seconds 2 --json out.json
    python bench/sweep_overhead.py --repeat 3            # 3 side-by-side rounds each, medians against the goals
    ray start --head --num-cpus 2 && RAY_AUTH_MODE=token python bench/sweep_overhead.py --ray-address auto; ray stop
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
N_TRIALS = 8
CONCURRENCY = 2
EPOCHS = 5
MATRIX = 192


# ------------------------------------------------------------------------------------------------------------------
# The fixed work, and the training entry point the sweep stack calls (TrainConfig / train / prepare)
# ------------------------------------------------------------------------------------------------------------------
def work(iters: int) -> float:
    import torch

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(MATRIX, MATRIX, generator=g)
    b = torch.randn(MATRIX, MATRIX, generator=g) / MATRIX**0.5
    for _ in range(iters):
        a = torch.tanh(a @ b)
    return float(a.sum())


def calibrate(target_s: float = 2.0) -> float:
    """Matmul iterations per second on one thread."""
    work(50)
    n, start = 200, time.perf_counter()
    work(n)
    return n / (time.perf_counter() - start)


class TrainConfig:
    """Accepts whatever the sweep passes (the searched fields are ignored by the fixed work)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        return cls(values)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)


def metrics_for(epoch: int, budget: float, final: bool) -> dict[str, float]:
    out = {"epoch": float(epoch), "budget": budget, "mean_val_acc": 0.5 + 0.01 * epoch,
           "feasible_mean_val_acc": 0.5 + 0.01 * epoch, "score": 0.0,
           "union_macs_ratio": budget, "union_params_ratio": budget, "union_macs": 1e6, "union_params": 1e5,
           "train_loss": 1.0 / epoch}
    for d in ("a", "b", "c", "d", "e"):
        for name in ("val_acc", "train_loss", "usage", "switches_on", "params", "macs", "params_ratio",
                     "macs_ratio"):
            out[f"{name}/{d}"] = 0.5
    if final:
        out["pruned_agreement"] = 1.0
    return out


_BOOT_LOGGED: set[int] = set()


def train(config: TrainConfig, out_dir: str | Path, *, data: Any = None, report: Any = None,
          resume_from: str | Path | None = None) -> dict:
    v = config.values
    out_dir = Path(out_dir)
    start = 0 if resume_from is None else int(Path(resume_from, "epoch.txt").read_text())
    log = v.get("timeline")
    if log and os.getpid() not in _BOOT_LOGGED:  # first trial of this worker: what starting the process cost
        import psutil

        _BOOT_LOGGED.add(os.getpid())
        proc = psutil.Process()
        cpu = proc.cpu_times()
        with open(log, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "boot_s": time.time() - proc.create_time(),
                                "boot_cpu_s": cpu.user + cpu.system, "modules": len(sys.modules),
                                "torch_preloaded": "torch" in sys.modules}) + "\n")
    for epoch in range(start, EPOCHS):
        t0 = time.time()
        work(int(v["iters_per_epoch"]))
        ckpt = out_dir / "checkpoints" / f"epoch_{epoch:04d}"
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "epoch.txt").write_text(str(epoch + 1))
        final = epoch == EPOCHS - 1
        m = metrics_for(epoch + 1, float(v.get("budget", 0.5)), final)
        if final:
            (out_dir / "metrics.json").write_text(json.dumps(m))
        if log:
            with open(log, "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "start": t0, "end": time.time()}) + "\n")
        if report is not None:
            r0 = time.time()
            report(m, ckpt)
            if log:
                with open(log, "a") as f:
                    f.write(json.dumps({"pid": os.getpid(), "report_s": time.time() - r0}) + "\n")
    return m


def prepare(train_values: dict[str, Any], keep_data: bool) -> dict[str, Any]:
    return {"data": None, "domains": ["synthetic"], "pretrained": None, "backbone_bytes": None}


def available_domains(spec: str) -> list[str]:
    return ["synthetic"]


# ------------------------------------------------------------------------------------------------------------------
# The two variants (each in its own interpreter)
# ------------------------------------------------------------------------------------------------------------------
def _pool_trial(iters_per_epoch: int) -> float:
    for _ in range(EPOCHS):
        work(iters_per_epoch)
    return 0.0


def run_pool(iters_per_epoch: int) -> dict[str, float]:
    import multiprocessing as mp

    import torch  # noqa: F401  (imported before fork, as a user's script would)

    start = time.perf_counter()
    with mp.get_context("fork").Pool(CONCURRENCY) as pool:
        pool.map(_pool_trial, [iters_per_epoch] * N_TRIALS, chunksize=1)
    return {"sweep_s": time.perf_counter() - start}


RAY_ADDRESS: str | None = None  # --ray-address: sweeps attach to a Ray that is already running


def stack_command(iters_per_epoch: int, root: Path) -> list[str]:
    """The sweep CLI exactly as a user runs it, with this module as the training entry point."""
    config = {
        "budgets": [0.25, 0.5, 0.75, 1.0], "num_samples": N_TRIALS // 4, "max_concurrent": CONCURRENCY,
        "cpus_per_trial": 1, "num_cpus": CONCURRENCY, "asha": {"enabled": False}, "verbose": 0,
        "entrypoint": "bench.sweep_overhead",
        "train": {"epochs": EPOCHS, "iters_per_epoch": iters_per_epoch, "timeline": str(root / "timeline.jsonl")},
    }
    (root / "bench.yaml").write_text(json.dumps(config))  # JSON is YAML
    return [sys.executable, str(REPO / "sweeps" / "decathlon.py"), "--preset", "smoke", "--config", "bench.yaml",
            "--name", "bench", "--tracking-uri", f"sqlite:///{root}/mlruns.db",
            "--storage-path", str(root / "ray_results"), "--optuna-storage", str(root / "optuna_journal.log"),
            *(["--address", RAY_ADDRESS] if RAY_ADDRESS else [])]


def stack_numbers(root: Path, started: float, whole: float) -> dict[str, Any]:
    """The sweep's own timings (its summary.json in MLflow) and the trials' timeline."""
    summary = json.loads(next(root.glob("mlruns/**/summary.json")).read_text())
    t = summary["timings"]
    events = [json.loads(line) for line in (root / "timeline.jsonl").read_text().splitlines()]
    epochs = [e for e in events if "start" in e]
    reports = [e["report_s"] for e in events if "report_s" in e]
    first_epoch = min(e["start"] for e in epochs)
    return {
        "sweep_s": t["fit_s"],
        "timings": t,
        "before_sweep_s": t["started_at"] - started,  # interpreter, imports, validation
        "after_summary_s": whole - (t["started_at"] - started) - t["summary_ready_s"],
        "first_epoch_after_fit_s": first_epoch - t["started_at"] - t["before_fit_s"],
        "trials": summary["trials"],
        "counts": summary["counts"],
        "mlflow": summary["mlflow"]["stats"],
        "worker_pids": len({e["pid"] for e in epochs}),
        "worker_boot": [e for e in events if "boot_s" in e],
        "warm_workers": summary.get("warm_workers", False),
        "report_wait_ms_mean": 1000 * sum(reports) / max(len(reports), 1),
        "report_wait_ms_max": 1000 * max(reports or [0]),
        "work_s": sum(e["end"] - e["start"] for e in epochs),
    }


def _variant(kind: str, iters_per_epoch: int) -> dict[str, Any]:
    """Run one variant in a fresh interpreter; returns its inner numbers plus the whole-process wall time."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
        root = Path(tmp)
        if kind == "stack":
            cmd = stack_command(iters_per_epoch, root)
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--run", kind, "--iters", str(iters_per_epoch)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        started = time.time()
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        if kind == "stack":
            inner = stack_numbers(root, started, wall)
        else:
            inner = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**inner, "whole_s": wall}


def compare(seconds: float, rate: float, round_: int = 0) -> dict[str, Any]:
    """One side-by-side round; odd rounds run the stack first, so a drifting machine does not favour one side."""
    iters = max(1, int(rate * seconds / EPOCHS))
    if round_ % 2:
        stack = _variant("stack", iters)
        pool = _variant("pool", iters)
    else:
        pool = _variant("pool", iters)
        stack = _variant("stack", iters)
    return {"trial_seconds": seconds, "iters_per_epoch": iters, "pool": pool, "stack": stack,
            "ratio_whole": stack["whole_s"] / pool["whole_s"], "ratio_sweep": stack["sweep_s"] / pool["sweep_s"]}


# Issue 4's goals: (trial seconds, measure) -> largest ratio b/a
GOALS = {(10.0, "whole"): 1.25, (10.0, "sweep"): 1.10, (2.0, "whole"): 2.0}


def verdict(rounds: list[dict[str, Any]]) -> str:
    seconds = rounds[0]["trial_seconds"]
    lines = [f"~{seconds:g} s trials, {len(rounds)} round(s), ratio b/a per round and median:"]
    for measure in ("whole", "sweep"):
        ratios = [r[f"ratio_{measure}"] for r in rounds]
        goal = GOALS.get((seconds, measure))
        check = "" if goal is None else f"   goal <= {goal:.2f}: {'PASS' if statistics.median(ratios) <= goal else 'FAIL'}"
        lines.append(f"  {measure:5s} {' '.join(f'{x:.2f}' for x in ratios)}   median {statistics.median(ratios):.2f}"
                     f"{check}")
    return "\n".join(lines)


def explain(r: dict[str, Any]) -> str:
    p, s = r["pool"], r["stack"]
    t = s["timings"]
    ideal = N_TRIALS * r["trial_seconds"] / CONCURRENCY
    lines = [
        f"~{r['trial_seconds']:g} s trials ({r['iters_per_epoch']} matmuls/epoch x {EPOCHS} epochs), "
        f"{N_TRIALS} trials, {CONCURRENCY} at a time (ideal {ideal:.1f} s of work per slot):",
        f"  whole process: pool {p['whole_s']:6.1f} s   stack {s['whole_s']:6.1f} s   ratio b/a {r['ratio_whole']:.2f}",
        f"  sweep only:    pool {p['sweep_s']:6.1f} s   stack {s['sweep_s']:6.1f} s   ratio b/a {r['ratio_sweep']:.2f}",
        "  where the stack's extra time goes:",
        f"    interpreter, imports and validation before the sweep starts: {s['before_sweep_s']:5.1f} s",
        f"    ray.init (local Ray; MLflow + Optuna setup overlap it):       {t['ray_init_s']:5.1f} s",
        f"    until data/preparation task and parent run ready:             {t['before_fit_s'] - t['ray_init_s']:5.1f} s",
        f"    Tune loop minus trial work ({s['work_s']:.1f} s over {CONCURRENCY} slots): "
        f"{s['sweep_s'] - s['work_s'] / CONCURRENCY:5.1f} s  "
        f"(first epoch {s['first_epoch_after_fit_s']:.1f} s after fit started; "
        f"{s['worker_pids']} worker processes, reused across trials)",
        "    trial workers" + (" (prestarted with torch and Ray Tune imported)" if s["warm_workers"] else "")
        + " from process start to their first train(): "
        + ", ".join(f"{b['boot_s']:.1f} s ({b['boot_cpu_s']:.1f} s CPU, {b['modules']} modules)"
                    for b in s["worker_boot"]),
        f"    driver CPU: {t['before_fit_driver_cpu_s']:.1f} s until fit, {t['fit_driver_cpu_s']:.1f} s during fit "
        "(Tune's loop, MLflow writer, Optuna)",
        f"    tune.report wait per epoch: mean {s['report_wait_ms_mean']:.0f} ms, max {s['report_wait_ms_max']:.0f} ms",
        f"    MLflow writer thread busy {s['mlflow']['busy_s']:.1f} s off the loop "
        f"({s['mlflow']['log_batch_calls']} log_batch calls for {s['mlflow']['metrics_logged']} metric values)",
        f"    after fit: MLflow drain {t['mlflow_drain_s']:.1f} s, summary "
        f"{t['summary_ready_s'] - t['before_fit_s'] - t['fit_s'] - t['mlflow_drain_s']:.1f} s, "
        f"then MLflow summary + ray.shutdown + exit {s['after_summary_s']:.1f} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, nargs="*", default=[10.0, 2.0], help="trial lengths to compare")
    ap.add_argument("--run", choices=("pool",), help=argparse.SUPPRESS)
    ap.add_argument("--iters", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=1, help="side-by-side rounds per trial length (median reported)")
    ap.add_argument("--ray-address", help="run the sweeps on this running Ray (e.g. auto, after `ray start --head "
                    "--num-cpus 2`; with Ray's token auth also set RAY_AUTH_MODE=token) instead of a local Ray each")
    ap.add_argument("--json", help="also write the raw numbers to this file")
    args = ap.parse_args(argv)
    if args.run == "pool":
        print(json.dumps(run_pool(args.iters)))
        return 0
    global RAY_ADDRESS
    RAY_ADDRESS = args.ray_address
    rate = calibrate()
    print(f"calibration: {rate:.0f} matmuls/s ({MATRIX}x{MATRIX}, 1 thread)", flush=True)
    results = []
    for seconds in args.seconds:
        rounds = []
        for i in range(args.repeat):
            rounds.append(compare(seconds, rate, i))
            print(explain(rounds[-1]), flush=True)
        print(verdict(rounds), flush=True)
        results.extend(rounds)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
