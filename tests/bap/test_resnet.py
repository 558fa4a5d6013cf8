"""Any torchvision ResNet as a multi-domain switched network: switching, pruning, counting, weights, save/load.

Small random-weight ResNet-18 and ResNet-50 at 32-48 px (the whole network runs, down to 1x1 or 2x2 in layer4).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from bap import (
    MultiDomainResNet,
    count_cost,
    from_torchvision,
    load_pruned,
    prune,
    reference_cost,
    save_pruned,
)
from bap.cost import unpruned_cost
from tests.bap.helpers import calibrate_norms, random_switches, randomize_norms

DOMAINS = {"a": 7, "b": 3, "c": 5}
SIZE = (3, 40, 40)


def _model(arch: str, seed: int = 0, domains: dict[str, int] = DOMAINS) -> MultiDomainResNet:
    torch.manual_seed(seed)
    return from_torchvision(arch, domains)


def _switch_randomly(model, seed: int, p_on: float, shared: bool) -> None:
    generator = torch.Generator().manual_seed(seed)
    pattern = random_switches(model, model.domains[0], p_on, generator)
    for domain in model.domains:
        model.set_switch_state(domain, pattern if shared else random_switches(model, domain, p_on, generator))


def _max_diff(model, pruned, x) -> float:
    with torch.no_grad():
        return max((model(x, d) - pruned(x, d)).abs().max().item() for d in model.domains)


def _macs(model, x, domain) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, domain)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize(("p_on", "shared"), [(0.5, False), (0.3, False), (0.6, True)])
def test_pruned_equals_switched_and_counts_are_real(arch, p_on, shared):
    model = _model(arch)
    _switch_randomly(model, seed=1, p_on=p_on, shared=shared)
    calibrate_norms(model, SIZE)
    pruned = prune(model).eval()
    x = torch.randn(2, *SIZE, generator=torch.Generator().manual_seed(2))
    assert _max_diff(model, pruned, x) <= 1e-4

    union = count_cost(model, None, SIZE)
    assert count_cost(pruned, None, SIZE) == union
    assert sum(p.numel() for p in pruned.parameters()) == union.params
    largest = max(model.domains, key=lambda d: DOMAINS[d])
    assert _macs(pruned, x[:1], largest) == union.macs
    unpruned = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("scores"))
    assert union.params < unpruned


def test_links_drop_inner_bottleneck_channels_and_keep_the_residual_stream():
    model = _model("resnet50")
    for domain in model.domains:
        state = model.switch_state(domain)
        state["layer1.0.conv3"][:5] = False  # conv2's filters 0-4: their only consumer is gone
        state["layer1.0.conv2"][:2] = False  # conv1's filters 0-1 likewise
        state["layer1.0.conv1"][:3] = False  # stem channels 0-2: still read by the projection shortcut
        model.set_switch_state(domain, state)
    calibrate_norms(model, SIZE)
    pruned = prune(model).eval()
    block = pruned.layer1[0]
    assert (block.conv1.out_channels, block.conv2.in_channels) == (62, 62)
    assert (block.conv2.out_channels, block.conv3.in_channels) == (59, 59)
    assert block.bn1.num_features == 62 and block.bn2.num_features == 59
    assert block.conv1.in_channels == 61 and block.downsample[0].in_channels == 64
    assert pruned.conv1.out_channels == 64  # the stem's outputs are on the residual stream
    assert _max_diff(model, pruned, torch.randn(2, *SIZE)) <= 1e-4


def test_every_conv_switched_with_torchvision_names():
    model = _model("resnet50")
    names = [name for name, _ in model.switched_convs()]
    assert names[0] == "conv1" and model.switch_state("a")["conv1"].shape == (3,)  # the RGB inputs
    assert "layer1.0.downsample.0" in names and "layer4.2.conv3" in names
    tv = torchvision.models.resnet50()
    assert len(names) == sum(isinstance(m, torch.nn.Conv2d) for m in tv.modules())


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_dense_counts_match_torchvision_itself(arch):
    """A single-domain network with every switch on is torchvision's: same parameters, same FlopCounter MACs."""
    tv = getattr(torchvision.models, arch)(num_classes=10)
    model = from_torchvision(tv, {"only": 10})
    size = (3, 48, 48)
    cost = reference_cost(model, None, size)
    assert cost == count_cost(model, None, size) == unpruned_cost(model, size)
    assert cost.params == sum(p.numel() for p in tv.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        tv(torch.zeros(1, *size))
    assert 2 * cost.macs == counter.get_total_flops()


def test_weights_from_a_local_file_give_torchvisions_outputs(tmp_path):
    torch.manual_seed(3)
    tv = torchvision.models.resnet18()
    randomize_norms(tv, 3)
    tv.eval()
    path = tmp_path / "resnet18-test.pth"
    torch.save(tv.state_dict(), path)
    model = from_torchvision("resnet18", {"imagenet": 1000, "birds": 4}, weights=path).eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert (model(x, "imagenet") - tv(x)).abs().max().item() <= 1e-4
        # the other domain shares the convs and starts from the same BNs
        features = torch.nn.Sequential(*list(tv.children())[:-1])
        expected = model.heads[1](torch.flatten(features(x), 1))
        assert (model(x, "birds") - expected).abs().max().item() <= 1e-4
    assert not model.conv1.weight.requires_grad and model.heads[1].weight.requires_grad


def test_bad_weights_files_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        from_torchvision("resnet18", DOMAINS, weights=tmp_path / "missing.pth")
    other = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), other)
    with pytest.raises(ValueError, match=r"not a torchvision resnet18 state dict \(it looks like resnet34\)"):
        from_torchvision("resnet18", DOMAINS, weights=other)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read as a torch state dict"):
        from_torchvision("resnet18", DOMAINS, weights=garbage)
    fc = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), fc)
    with pytest.raises(ValueError, match=r"domain 'imagenet' has 10 classes but the checkpoint's fc has 1000"):
        from_torchvision("resnet18", {"imagenet": 10}, weights=fc)
    with pytest.raises(ValueError, match=r"arch must be one of \['resnet18'"):
        from_torchvision("resnet19", DOMAINS)
    with pytest.raises(TypeError, match="must be a torchvision ResNet"):
        from_torchvision(torch.nn.Linear(2, 2), DOMAINS)


def test_save_load_roundtrip(tmp_path):
    model = _model("resnet50")
    _switch_randomly(model, seed=5, p_on=0.5, shared=False)
    calibrate_norms(model, SIZE)
    pruned = prune(model).eval()
    save_pruned(pruned, tmp_path / "pruned")
    loaded = load_pruned(tmp_path / "pruned").eval()
    assert isinstance(loaded, MultiDomainResNet) and loaded.config == model.config
    x = torch.randn(2, *SIZE)
    assert _max_diff(pruned, loaded, x) == 0.0
    assert count_cost(loaded, None, SIZE) == count_cost(model, None, SIZE)
    for domain in model.domains:
        assert all(torch.equal(loaded.switch_state(domain)[k], v) for k, v in pruned.switch_state(domain).items())


def test_full_resnet50_at_224_matches_torchvisions_published_size():
    """torchvision's ResNet-50 card: 25,557,032 parameters, 4.09 GFLOPS (which are MACs)."""
    model = from_torchvision("resnet50", {"imagenet": 1000})
    size = (3, 224, 224)
    cost = reference_cost(model, None, size)
    assert cost.params == 25_557_032
    with torch.device("meta"):
        tv = torchvision.models.resnet50()
    with FlopCounterMode(display=False) as counter:
        tv(torch.empty(1, *size, device="meta"))
    assert 2 * cost.macs == counter.get_total_flops()
    assert round(cost.macs / 1e9, 2) == 4.09
