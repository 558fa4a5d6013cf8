"""The GPU trial benchmark runs end to end (tiny, on the CPU): its tables and goals are printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_trial_benchmark_smoke_run():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_trial.py"), "--smoke"], capture_output=True,
                          text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "| 16 | switched | True | 8 |" in out and "| 2 | 4 |" in out
    assert "switched compiled / plain compiled" in out and "one joint epoch over 9 domains" in out


def test_gpu_trial_benchmark_needs_cuda_unless_smoke():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the full benchmark would run")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_trial.py")], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr


@pytest.mark.slow
def test_inference_fixes_benchmark_smoke_run():
    """Every before/after variant computes the switched model's outputs (the script asserts it) and is tabled."""
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "inference_fixes.py"), "--quick"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for label in ("all on", "keep 0.7", "keep 0.45"):
        assert f"| {label} | single-domain, folded, channels-last, x8 (after) |" in out
        assert f"| {label} | multi-domain, identity gathers (before) |" in out
    assert "after / before, same network, same round" in out


@pytest.mark.slow
def test_sweep_models_latency_benchmark_smoke_run():
    """A real smoke sweep's pruned models are timed, exact and rounded, and set against their MACs ratios."""
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "sweep_models_latency.py"), "--smoke",
                           "--min-time-s", "0.01"], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "2 trials of latency" in out and out.count("| 0.25 |") + out.count("| 0.75 |") == 2
    assert "median latency ratio / MACs ratio at batch 64 (x8)" in out
