"""One short CPU training run on a generated ImageNet-to-Sketch tree, end to end, with a torchvision ResNet-18 from
a local weights file; and the training config's checks for the generic architectures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torchvision

from bap import MultiDomainResNet, count_cost, load_pruned
from bap import metrics as M
from bap.config import TrainConfig
from bap.train import train
from tests.bap.sketch_tree import make_sketch_tree

BUDGET = 0.5
SIZE = 32


@pytest.fixture(scope="module")
def sketch_root(tmp_path_factory):
    return make_sketch_tree(tmp_path_factory.mktemp("sketch") / "imagenet-to-sketch", domains=("cubs_cropped", "flowers"))


def test_a_short_resnet18_run_on_the_sketch_layout(sketch_root, tmp_path):
    weights = tmp_path / "resnet18-local.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    config = TrainConfig(data=str(sketch_root), arch="resnet18", pretrained=str(weights), image_size=SIZE, crop=SIZE,
                         budget=BUDGET, sharing="union", epochs=2, steps_per_epoch=2, batch_size=4, device="cpu",
                         cache_dir=str(tmp_path / "cache"))
    result = train(config, tmp_path / "run")

    saved = json.loads((tmp_path / "run" / M.METRICS_FILE).read_text())
    assert list(saved[M.JSON_DOMAINS]) == ["cubs_cropped", "flowers"]
    assert saved[M.SCORE] is None  # no Decathlon score for this benchmark
    assert saved[M.JSON_BACKBONE] == str(weights) and saved[M.JSON_INPUT_SIZE] == [3, SIZE, SIZE]
    for domain in saved[M.JSON_DOMAINS].values():
        assert domain[M.USAGE] <= BUDGET + 1e-6 and 0.0 <= domain[M.VAL_ACC] <= 1.0 and M.TEST_ACC in domain
    assert saved[M.PRUNED_AGREEMENT] == 1.0 and result[M.PRUNED_AGREEMENT] == 1.0
    assert saved[M.JSON_UNION]["params_ratio"] < 1.0 and saved[M.JSON_UNION]["macs_ratio"] < 1.0

    pruned = load_pruned(tmp_path / "run" / "pruned")
    assert isinstance(pruned, MultiDomainResNet) and pruned.config["arch"] == "resnet18"
    assert sum(p.numel() for p in pruned.parameters()) == saved[M.JSON_UNION]["params"]
    assert count_cost(pruned, None, (3, SIZE, SIZE)).macs == saved[M.JSON_UNION]["macs"]
    # the reference is one single-domain ResNet-18 with the larger head
    assert saved[M.JSON_REFERENCE]["params"] == sum(p.numel() for p in torchvision.models.resnet18(num_classes=3)
                                                    .parameters())


def test_the_cli_trains_a_torchvision_resnet(sketch_root, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "bap", "train", "--data", str(sketch_root), "--arch", "resnet18", "--pretrain-epochs",
         "0", "--image-size", "24", "--crop", "24", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2",
         "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / M.METRICS_FILE).read_text())[M.JSON_CONFIG]["arch"] == "resnet18"


@pytest.mark.parametrize(("override", "message"), [
    ({"arch": "vgg16"}, r"arch must be one of \['resnet26', 'resnet18'"),
    ({"arch": "resnet50"}, r"arch resnet50 starts from torchvision weights.*pretrained.*pretrain_epochs=0"),
    ({"image_size": 32, "crop": 40}, r"crop \(40\) must be <= image_size \(32\)"),
    ({"crop": 0}, r"crop must be an integer >= 1"),
])
def test_bad_architecture_settings_name_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**override)


def test_a_weights_file_of_another_architecture_fails_before_training(sketch_root, tmp_path):
    weights = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), weights)
    config = TrainConfig(data=str(sketch_root), arch="resnet18", pretrained=str(weights), image_size=SIZE, crop=SIZE,
                         epochs=1, steps_per_epoch=1, batch_size=2, device="cpu", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=r"not a torchvision resnet18 state dict \(it looks like resnet34\)"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run" / M.METRICS_FILE).exists()
