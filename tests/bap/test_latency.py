"""bap.latency times every domain's deployable network beside its unpruned twin; bap.neighbours counts the runs it
shared the machine with. Values are measured: the tests check names, signs and bookkeeping, never a speed."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from bap import metrics as M
from bap.export import single_domain_module
from bap.latency import measure_latency, unpruned_network
from bap.neighbours import RUNS_DIR_ENV, other_runs, registered_run
from bap.network import build_network
from bap.prune import prune

INPUT = (3, 32, 32)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(RUNS_DIR_ENV, str(tmp_path / "runs"))
    return tmp_path / "runs"


def _half_pruned() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_network("resnet26", {"a": 3, "b": 5}, width=0.25, blocks=1).eval()
    for domain in model.domains:
        state = {name: torch.rand(conv.in_channels) < 0.5 for name, conv in model.switched_convs()}
        state["stem"] = torch.ones(3, dtype=torch.bool)
        model.set_switch_state(domain, state)
    return prune(model).eval()


def test_every_domain_and_batch_is_timed_under_the_vocabulary(runs_dir):
    model = _half_pruned()
    out = measure_latency(model, INPUT, min_time_s=0.01, threads=1)
    expected = {M.LATENCY_THREADS, M.LATENCY_NEIGHBOURS, M.LATENCY_CHANNEL_MULTIPLE}
    for batch in M.LATENCY_BATCHES:
        for kind in (M.LATENCY_MS, M.LATENCY_RATIO):
            name = M.latency_metric("cpu", batch, kind)
            expected |= {name, *(M.domain_metric(name, d) for d in model.domains)}
    assert set(out) == expected
    assert all(M.is_known_metric(k) and M.is_measured(k) for k in out)
    assert all(math.isfinite(v) and v > 0 for k, v in out.items() if k != M.LATENCY_NEIGHBOURS)
    assert out[M.LATENCY_THREADS] == 1 and out[M.LATENCY_NEIGHBOURS] == 0 and out[M.LATENCY_CHANNEL_MULTIPLE] == 8
    for batch in M.LATENCY_BATCHES:
        name = M.latency_metric("cpu", batch)
        assert out[name] == max(out[M.domain_metric(name, d)] for d in model.domains)  # the slowest domain


def test_the_unpruned_twin_has_every_switch_on_and_the_full_size():
    model = _half_pruned()
    dense = unpruned_network(model)
    for domain in model.domains:
        pruned_params = sum(p.numel() for p in single_domain_module(model, domain).parameters())
        dense_params = sum(p.numel() for p in single_domain_module(dense, domain).parameters())
        assert pruned_params < dense_params
        assert all(bool(on.all()) for on in dense.switch_state(domain).values())


def test_bad_device_and_domain_are_refused_naming_the_allowed_values():
    model = _half_pruned()
    with pytest.raises(ValueError, match="cpu, cuda"):
        measure_latency(model, INPUT, device="tpu")
    with pytest.raises(KeyError, match="a"):
        measure_latency(model, INPUT, domains=["zebra"])
    with pytest.raises(ValueError, match="batch"):
        M.latency_metric("cpu", 32)


def test_a_run_counts_the_other_live_runs_and_forgets_dead_ones(runs_dir):
    holder = ("import sys, time\nfrom bap.neighbours import registered_run\n"
              "with registered_run():\n    print('ready', flush=True)\n    time.sleep(120)\n")
    env = {**os.environ, RUNS_DIR_ENV: str(runs_dir)}
    with registered_run():
        assert other_runs() == 0  # its own marker does not count
        other = subprocess.Popen([sys.executable, "-c", holder], env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout.readline().strip() == "ready"
            assert other_runs() == 1
        finally:
            other.kill()  # no clean exit: its marker stays behind
            other.wait()
        assert other_runs() == 0  # reaped: its pid is gone
        assert len(list(runs_dir.iterdir())) == 1  # the dead run's marker was cleaned up, ours is left
    assert list(runs_dir.iterdir()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_cuda_names_are_measured(runs_dir):
    out = measure_latency(_half_pruned().cuda(), INPUT, device="cuda", min_time_s=0.01)
    for batch in M.LATENCY_BATCHES:
        assert out[M.latency_metric("cuda", batch)] > 0 and out[M.latency_metric("cuda", batch, M.LATENCY_RATIO)] > 0
