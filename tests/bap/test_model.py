import pytest
import torch

from bap import MultiDomainResNet26
from tests.bap.helpers import tiny_model


def test_forward_shapes_per_domain_and_frozen_backbone():
    model = tiny_model({"a": 10, "b": 5})
    x = torch.randn(2, 3, 32, 32)
    assert model(x, "a").shape == (2, 10) and model(x, "b").shape == (2, 5)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.endswith("conv1.weight") or n.endswith("conv2.weight") or n == "stem.weight" for n in trainable)
    assert any(n.endswith("scores") for n in trainable) and "heads.0.weight" in trainable


def test_switch_state_roundtrip_and_effect():
    model = tiny_model({"a": 10, "b": 5}).eval()
    state = model.switch_state("a")
    assert set(state) == {"stem", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2",
                          "layer3.0.conv1", "layer3.0.conv2"}
    assert all(s.dtype == torch.bool and bool(s.all()) for s in state.values())
    state["layer2.0.conv2"][::2] = False
    model.set_switch_state("a", state)
    assert torch.equal(model.switch_state("a")["layer2.0.conv2"], state["layer2.0.conv2"])
    assert bool(model.switch_state("b")["layer2.0.conv2"].all())


def test_bad_inputs_name_field_and_allowed_values():
    model = tiny_model({"a": 10, "b": 5})
    with pytest.raises(KeyError, match=r"unknown domain 'x'; this model has domains \['a', 'b'\]"):
        model(torch.randn(1, 3, 16, 16), "x")
    with pytest.raises(KeyError, match="unknown switched layers"):
        model.set_switch_state("a", {"layer9.conv1": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"layer 'stem' must have shape \(3,\)"):
        model.set_switch_state("a", {"stem": torch.ones(4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="num_classes"):
        MultiDomainResNet26({})


def test_backbone_checkpoint_roundtrip_and_architecture_mismatch(tmp_path):
    source = tiny_model({"a": 10})
    path = tmp_path / "backbone.pt"
    torch.save(source.backbone_state("a"), path)
    target = tiny_model({"x": 3, "y": 4})
    with torch.no_grad():
        target.stem.weight.zero_()
    target.load_backbone(path)
    assert torch.equal(target.stem.weight, source.stem.weight)
    assert torch.equal(target.layer1[0].bn1.bns[1].running_var, source.layer1[0].bn1.bns[0].running_var)

    wider = MultiDomainResNet26({"a": 10}, width=0.25, blocks=1)
    with pytest.raises(ValueError, match=r"layer 'stem' has shape \(4, 3, 3, 3\) but this model .* expects \(8, 3, 3, 3\)"):
        wider.load_backbone(path)
    deeper = MultiDomainResNet26({"a": 10}, width=0.125, blocks=2)
    with pytest.raises(ValueError, match="missing layers.*layer1.1.conv1"):
        deeper.load_backbone(path)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a backbone checkpoint"):
        target.load_backbone(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        target.load_backbone(tmp_path / "missing.pt")
