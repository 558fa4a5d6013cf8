"""torch.compile serves all ten domains with one graph (per mode), and computes what the eager network computes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounter, CompileCounterWithBackend

from bap import MultiDomainResNet26, from_torchvision
from bap.compiled import CompiledDomains, resolve_compile
from bap.config import TrainConfig
from bap.train import train

TEN_DOMAINS = {f"domain{i}": i + 2 for i in range(10)}  # heads of ten different sizes
BUILDERS = {
    "resnet26": lambda: MultiDomainResNet26(TEN_DOMAINS, width=0.125, blocks=1),
    "resnet18": lambda: from_torchvision("resnet18", TEN_DOMAINS),
}


def _max_state_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa)


def _train_and_eval_every_domain(eager, compiled, x) -> tuple[float, float]:
    """Max output and gradient differences over a training pass (with backward) and an eval pass of every domain."""
    outputs = grads = 0.0
    for training in (True, False):
        eager.train(training)
        compiled.model.train(training)
        for domain in TEN_DOMAINS:
            with torch.set_grad_enabled(training):
                expected, got = eager(x, domain), compiled(x, domain)
            outputs = max(outputs, (expected - got).abs().max().item())
            if training:
                F.cross_entropy(expected, torch.zeros(len(x), dtype=torch.long)).backward()
                F.cross_entropy(got, torch.zeros(len(x), dtype=torch.long)).backward()
    for p, q in zip(eager.parameters(), compiled.model.parameters(), strict=True):
        if p.grad is not None:
            grads = max(grads, (p.grad - q.grad).abs().max().item())
    return outputs, grads


@pytest.mark.parametrize("arch", ["resnet26", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_one_graph_per_mode_serves_ten_domains(arch):
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = BUILDERS[arch]()
    counter = CompileCounter()
    compiled = CompiledDomains(copy.deepcopy(eager), backend=counter)
    outputs, grads = _train_and_eval_every_domain(eager, compiled, torch.randn(4, 3, 32, 32))
    assert counter.frame_count == 2  # one graph for training, one for eval, each serving all ten domains
    assert outputs <= 1e-5 and grads <= 1e-5
    assert _max_state_diff(eager, compiled.model) <= 1e-5  # every domain's BN statistics updated alike


@pytest.mark.slow
def test_inductor_compiles_one_training_graph_for_ten_domains():
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = BUILDERS["resnet26"]()
    counter = CompileCounterWithBackend("inductor")
    compiled = CompiledDomains(copy.deepcopy(eager), backend=counter)
    x = torch.randn(4, 3, 32, 32)
    for domain in TEN_DOMAINS:
        expected, got = eager(x, domain), compiled(x, domain)
        assert (expected - got).abs().max().item() <= 1e-4
        expected.sum().backward()
        got.sum().backward()
    assert counter.frame_count == 1
    assert _max_state_diff(eager, compiled.model) <= 1e-4


def test_compile_is_on_for_cuda_and_off_for_cpu_by_default():
    assert resolve_compile(None, torch.device("cuda")) and not resolve_compile(None, torch.device("cpu"))
    assert resolve_compile(True, torch.device("cpu")) and not resolve_compile(False, torch.device("cuda"))
    assert TrainConfig().compile is None


@pytest.mark.slow
def test_a_compiled_training_run_matches_the_eager_one(tmp_path, mini_data):
    torch._dynamo.reset()
    settings = {"width": 0.125, "blocks": 1, "steps_per_epoch": 2, "batch_size": 8, "pretrain_epochs": 0, "epochs": 1,
                "domains": ("digits", "signs"), "device": "cpu", "budget": 0.5}
    eager = train(TrainConfig(compile=False, **settings), tmp_path / "eager", data=mini_data)
    compiled = train(TrainConfig(compile=True, **settings), tmp_path / "compiled", data=mini_data)
    for name in settings["domains"]:
        a, b = eager["domains"][name], compiled["domains"][name]
        assert abs(a["val_acc"] - b["val_acc"]) <= 0.02 and a["params"] == b["params"]
    assert compiled["pruned_agreement"] == 1.0
