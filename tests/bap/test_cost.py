import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bap import MultiDomainResNet26, count_cost, count_layer_costs, prune, reference_cost, switch_costs
from tests.bap.helpers import tiny_model

CONV_NAMES = ("stem", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2",
              "layer3.0.conv1", "layer3.0.conv2")


def test_full_resnet26_matches_paper_sizes():
    model = MultiDomainResNet26({"imagenet12": 1000})
    layers = count_layer_costs(model, "imagenet12", input_size=(3, 64, 64))
    conv = [cost for name, cost in layers.items() if name not in ("norms", "head")]
    assert len(conv) == 25
    assert sum(c.params for c in conv) == 5_806_944  # paper.md §2.1
    assert sum(c.macs for c in conv) == 852_885_504  # ~0.853 GMACs at 64 px
    at_72 = count_layer_costs(model, "imagenet12", input_size=(3, 72, 72))
    assert round(sum(c.macs for n, c in at_72.items() if n not in ("norms", "head")) / 1e9, 3) == 1.079
    assert layers["norms"].params == 7_744  # per-domain BN affine
    assert layers["head"].params == 257_000


def test_hand_count_tiny_network_all_on():
    model = tiny_model({"a": 10})
    layers = count_layer_costs(model, "a", input_size=(3, 16, 16))
    # (out * in * 3 * 3 params, times H_out * W_out MACs); stem keeps 16 px, each stage halves it.
    expected = {
        "stem": (4 * 3 * 9, 4 * 3 * 9 * 16 * 16),
        "layer1.0.conv1": (8 * 4 * 9, 8 * 4 * 9 * 8 * 8),
        "layer1.0.conv2": (8 * 8 * 9, 8 * 8 * 9 * 8 * 8),
        "layer2.0.conv1": (16 * 8 * 9, 16 * 8 * 9 * 4 * 4),
        "layer2.0.conv2": (16 * 16 * 9, 16 * 16 * 9 * 4 * 4),
        "layer3.0.conv1": (32 * 16 * 9, 32 * 16 * 9 * 2 * 2),
        "layer3.0.conv2": (32 * 32 * 9, 32 * 32 * 9 * 2 * 2),
    }
    for name, (params, macs) in expected.items():
        assert (layers[name].params, layers[name].macs) == (params, macs), name
    # BN affine: 2 x (4 + 8 + 8 + 16 + 16 + 32 + 32 + 32 head) = 296; head 32*10 + 10 params, 320 MACs.
    assert layers["norms"].params == 296
    assert (layers["head"].params, layers["head"].macs) == (330, 320)
    total = count_cost(model, "a", input_size=(3, 16, 16))
    assert total.params == 18_252 + 296 + 330
    assert total.macs == 193_536 + 320
    assert total == reference_cost(model, "a", input_size=(3, 16, 16))


def test_hand_count_with_switches_and_union():
    model = tiny_model({"a": 10, "b": 4})
    state_a = model.switch_state("a")
    state_a["stem"][0] = False  # stem reads 2 of 3 RGB channels
    state_a["layer1.0.conv2"][[0, 1, 2]] = False  # conv2 reads 5 of 8 -> conv1 keeps 5 live filters
    model.set_switch_state("a", state_a)
    state_b = model.switch_state("b")
    state_b["layer1.0.conv2"][[2, 3]] = False
    state_b["layer3.0.conv2"][:] = False
    model.set_switch_state("b", state_b)

    a = count_layer_costs(model, "a", input_size=(3, 16, 16))
    assert a["stem"].params == 4 * 2 * 9
    assert a["layer1.0.conv1"].params == 5 * 4 * 9 and a["layer1.0.conv1"].macs == 5 * 4 * 9 * 64
    assert a["layer1.0.conv2"].params == 8 * 5 * 9
    assert a["norms"].params == 296 - 2 * 3  # bn1 of layer1.0 has 5 live channels

    b = count_layer_costs(model, "b", input_size=(3, 16, 16))
    assert b["layer1.0.conv2"].params == 8 * 6 * 9 and b["layer3.0.conv2"].params == 0
    assert (b["head"].params, b["head"].macs) == (32 * 4 + 4, 32 * 4)

    union = count_layer_costs(model, None, input_size=(3, 16, 16))
    assert union["stem"].params == 4 * 3 * 9  # b uses every RGB channel
    assert union["layer1.0.conv2"].params == 8 * 7 * 9  # channel 2 is off for both
    assert union["layer1.0.conv1"].params == 7 * 4 * 9
    assert union["layer3.0.conv2"].params == 32 * 32 * 9
    assert union["norms"].params == 2 * (296 - 2 * 1)
    assert union["head"] == type(union["head"])(330 + 132, 320)  # all heads' params, the largest head's MACs


def _measured_macs(model, domain, size):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *size), domain)
    return counter.get_total_flops() // 2  # FlopCounterMode counts 2 FLOPs per MAC


def test_counts_agree_with_pruned_network_and_flop_counter():
    model = tiny_model().eval()
    generator = torch.Generator().manual_seed(1)
    for domain in model.domains:
        model.set_switch_state(domain, {
            name: torch.rand(mask.shape, generator=generator) < 0.6
            for name, mask in model.switch_state(domain).items()
        })
    size = (3, 32, 32)
    pruned = prune(model).eval()
    union = count_cost(model, None, size)
    assert count_cost(pruned, None, size) == union
    assert sum(p.numel() for p in pruned.parameters()) == union.params
    assert max(_measured_macs(pruned, d, size) for d in model.domains) == union.macs
    for domain in model.domains:
        assert count_cost(pruned, domain, size) == count_cost(model, domain, size)
    assert reference_cost(pruned, None, size) == reference_cost(model, None, size)


def test_switch_costs_units():
    model = tiny_model({"a": 10})
    switches = switch_costs(model, "switches", (3, 16, 16))
    params = switch_costs(model, "params", (3, 16, 16))
    macs = switch_costs(model, "macs", (3, 16, 16))
    assert [len(c) for c in params] == [3, 4, 8, 8, 16, 16, 32]
    assert all(bool((c == 1).all()) for c in switches)
    assert float(params[0][0]) == 4 * 9 and float(macs[0][0]) == 4 * 9 * 256
    # Summing the per-switch params costs recovers every conv weight.
    assert sum(float(c.sum()) for c in params) == 18_252
    with pytest.raises(ValueError, match="switches.*params.*macs"):
        switch_costs(model, "flops")


def test_unknown_domain_names_allowed_values():
    model = tiny_model()
    with pytest.raises(KeyError, match=r"unknown domain 'zz'.*\['a', 'b', 'c'\]"):
        count_cost(model, "zz")
