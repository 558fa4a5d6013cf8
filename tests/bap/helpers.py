"""Small builders shared by the core tests."""

from __future__ import annotations

import torch

from bap import MultiDomainResNet26

TINY = {"width": 0.125, "blocks": 1}  # stem 4, stages 8/16/32, one block each


def tiny_model(num_classes: dict[str, int] | None = None, **kwargs) -> MultiDomainResNet26:
    torch.manual_seed(0)
    return MultiDomainResNet26(num_classes or {"a": 10, "b": 5, "c": 3}, **{**TINY, **kwargs})


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial statistics and affine parameters, so equivalence tests can fail."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator))
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def random_switches(model: MultiDomainResNet26, domain: str, p_on: float, generator: torch.Generator) -> dict:
    return {
        name: torch.rand(mask.shape, generator=generator) < p_on
        for name, mask in model.switch_state(domain).items()
    }


def calibrate_norms(model: torch.nn.Module, input_size: tuple[int, int, int], seed: int = 0) -> None:
    """Random BN affine parameters, and running statistics estimated from random images under the current
    switches: a deep network's activations stay O(1), as a trained one's do (random statistics let them grow to
    hundreds through a ResNet-50, where float32 rounding alone exceeds an absolute tolerance)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
                module.reset_running_stats()
                module.momentum = None  # a cumulative average over the calibration batches
        model.train()
        for domain in model.domains:
            model(torch.randn(8, *input_size, generator=generator), domain)
    model.eval()
