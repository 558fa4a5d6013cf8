import json

import pytest
import torch

from bap import count_cost, load_pruned, prune, save_pruned
from tests.bap.helpers import random_switches, randomize_norms, tiny_model


def _assert_same_outputs(model, pruned, x):
    with torch.no_grad():
        for domain in model.domains:
            expected, got = model(x, domain), pruned(x, domain)
            assert got.shape == expected.shape
            assert (got - expected).abs().max().item() <= 1e-5, domain


def _switched(seed: int, p_on: float = 0.5):
    model = tiny_model()
    randomize_norms(model, seed)
    generator = torch.Generator().manual_seed(seed)
    for domain in model.domains:
        model.set_switch_state(domain, random_switches(model, domain, p_on, generator))
    return model.eval()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("p_on", [0.3, 0.7])
def test_pruned_computes_the_same_outputs(seed, p_on):
    model = _switched(seed, p_on)
    pruned = prune(model).eval()
    x = torch.randn(4, 3, 24, 24, generator=torch.Generator().manual_seed(seed))
    _assert_same_outputs(model, pruned, x)
    assert sum(p.numel() for p in pruned.parameters()) == count_cost(model).params
    unpruned = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("scores"))
    assert sum(p.numel() for p in pruned.parameters()) <= unpruned
    if p_on < 0.5:  # with 3 domains at 30% each, some channels are surely used by none
        assert sum(p.numel() for p in pruned.parameters()) < unpruned


def _edge_model():
    model = _switched(7, 0.5)
    model.set_switch_state("a", {name: torch.ones_like(m) for name, m in model.switch_state("a").items()})
    state_b = model.switch_state("b")
    state_b["layer2.0.conv1"][:] = False  # domain b: nothing in one layer
    model.set_switch_state("b", state_b)
    for domain in model.domains:  # no domain reads layer3's conv2 at all, nor layer1's conv1
        state = model.switch_state(domain)
        state["layer3.0.conv2"][:] = False
        state["layer1.0.conv1"][:] = False
        model.set_switch_state(domain, state)
    return model


def test_edge_patterns_all_on_one_domain_off_in_a_layer_and_a_layer_off_for_all(tmp_path):
    model = _edge_model()
    pruned = prune(model).eval()
    _assert_same_outputs(model, pruned, torch.randn(3, 3, 16, 16))
    assert pruned.layer3[0].conv2.in_channels == 0 and pruned.layer3[0].conv1.out_channels == 0
    assert pruned.layer1[0].conv1.in_channels == 0
    assert sum(p.numel() for p in pruned.parameters()) == count_cost(model).params
    save_pruned(pruned, tmp_path / "pruned")  # a block that keeps no inner filter round-trips too
    _assert_same_outputs(pruned, load_pruned(tmp_path / "pruned").eval(), torch.randn(3, 3, 16, 16))


def test_all_on_prunes_nothing():
    model = tiny_model().eval()
    randomize_norms(model)
    pruned = prune(model).eval()
    _assert_same_outputs(model, pruned, torch.randn(2, 3, 16, 16))
    assert count_cost(pruned) == count_cost(model)


def test_a_conv_that_keeps_every_input_gathers_nothing_and_older_files_still_load(tmp_path):
    model = tiny_model().eval()
    randomize_norms(model)
    pruned = prune(model).eval()
    assert all(conv.in_index is None for _, conv in pruned.switched_convs())
    save_pruned(pruned, tmp_path / "pruned")
    weights = tmp_path / "pruned" / "model.pt"
    state = torch.load(weights, weights_only=True)
    state["stem.in_index"] = torch.arange(3)  # what files written before this change hold
    torch.save(state, weights)
    _assert_same_outputs(pruned, load_pruned(tmp_path / "pruned").eval(), torch.randn(2, 3, 16, 16))


def test_save_load_roundtrip(tmp_path):
    model = _switched(3)
    pruned = prune(model).eval()
    save_pruned(pruned, tmp_path / "pruned")
    architecture = json.loads((tmp_path / "pruned" / "architecture.json").read_text())
    layer = architecture["layers"]["layer1.0.conv2"]
    assert set(layer["switches"]) == {"a", "b", "c"}
    assert all(len(bits) == len(layer["kept_inputs"]) for bits in layer["switches"].values())
    loaded = load_pruned(tmp_path / "pruned").eval()
    _assert_same_outputs(pruned, loaded, torch.randn(2, 3, 16, 16))
    assert count_cost(loaded) == count_cost(model)


@pytest.mark.parametrize("multiple", [4, 8])
def test_rounded_kept_channels_pad_with_switched_off_channels_and_compute_the_same(tmp_path, multiple):
    model = _switched(5, 0.3)
    plain, rounded = prune(model).eval(), prune(model, channel_multiple=multiple).eval()
    x = torch.randn(4, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    _assert_same_outputs(model, rounded, x)
    padded = False
    for name, conv in rounded.switched_convs():
        kept, width = conv.in_channels, rounded.pruning_maps[name]["in_channels"]
        assert kept == width or (kept % multiple == 0 and kept < width) or kept == 0, name
        extra = kept - dict(plain.switched_convs())[name].in_channels
        assert extra >= 0 and int((~conv.masks.any(dim=0)).sum()) == extra  # the padding: off for every domain
        padded |= extra > 0
    assert padded
    assert count_cost(rounded) == count_cost(model)  # what the domains use is unchanged...
    assert sum(p.numel() for p in rounded.parameters()) > count_cost(model).params  # ...the padding costs params
    save_pruned(rounded, tmp_path / "rounded")
    _assert_same_outputs(model, load_pruned(tmp_path / "rounded").eval(), x)


def test_bad_inputs(tmp_path):
    model = tiny_model()
    with pytest.raises(ValueError, match="save_pruned expects a pruned model"):
        save_pruned(model, tmp_path)
    with pytest.raises(ValueError, match="already pruned"):
        prune(prune(model))
    with pytest.raises(ValueError, match="channel_multiple must be a positive integer"):
        prune(model, channel_multiple=0)
    with pytest.raises(FileNotFoundError, match="architecture.json"):
        load_pruned(tmp_path / "nothing")
