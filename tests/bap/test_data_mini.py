"""The offline mini-decathlon, the shared dispatch, the CLI, and ``prepare_batch``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import bap.data.mini as mini
from bap.data import (
    MINI_DOMAINS,
    DomainData,
    DomainSplit,
    available_domains,
    load_data,
    load_mini,
    prepare_batch,
)
from bap.data.__main__ import main as cli_main


@pytest.fixture(scope="module")
def mini_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mini_cache")


@pytest.fixture(scope="module")
def mini_built(mini_cache: Path) -> dict[str, DomainData]:
    return load_mini(cache_dir=mini_cache)


def test_domains_shapes_and_labels(mini_built: dict[str, DomainData]) -> None:
    assert len(MINI_DOMAINS) >= 5
    assert list(mini_built) == list(MINI_DOMAINS) == available_domains("mini")
    for name, d in mini_built.items():
        assert d.name == name and d.crop == 32 and d.size == 36
        assert len(d.class_names) == d.num_classes >= 2
        for split in ("train", "val", "test"):
            part = d.split(split)
            assert part.images.dtype == torch.uint8 and part.images.shape[1:] == (3, 36, 36)
            assert part.labels.dtype == torch.int64 and len(part) > 0
            assert 0 <= int(part.labels.min()) and int(part.labels.max()) < d.num_classes
            # Stratified: every class is present in every split.
            assert torch.unique(part.labels).numel() == d.num_classes
        assert 200 <= len(d.train) + len(d.val) + len(d.test) <= 2000
        assert all(0.0 < s for s in d.std) and all(0.0 <= m <= 1.0 for m in d.mean)
        assert d.baseline_error is None or 0.0 <= d.baseline_error <= 1.0
    assert {n for n, d in mini_built.items() if not d.flip} == {"digits", "glyphs", "signs"}


def test_train_val_test_are_disjoint(mini_built: dict[str, DomainData]) -> None:
    for name, d in mini_built.items():
        hashes = {
            split: {hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in d.split(split).images}
            for split in ("train", "val", "test")
        }
        assert not hashes["train"] & hashes["val"], name
        assert not hashes["train"] & hashes["test"], name
        assert not hashes["val"] & hashes["test"], name


def test_same_seed_rebuilds_bitwise_identical(
    mini_built: dict[str, DomainData], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAP_CACHE_DIR", str(tmp_path))  # the default cache dir follows the variable
    again = load_mini()
    assert (tmp_path / "mini" / f"v{mini.MINI_VERSION}" / "digits_s36_seed0.pt").is_file()
    for name in MINI_DOMAINS:
        for split in ("train", "val", "test"):
            assert torch.equal(mini_built[name].split(split).images, again[name].split(split).images), name
            assert torch.equal(mini_built[name].split(split).labels, again[name].split(split).labels), name
        assert mini_built[name].mean == again[name].mean and mini_built[name].std == again[name].std


def test_other_seed_differs(mini_built: dict[str, DomainData], tmp_path: Path) -> None:
    other = load_mini(["faces"], seed=1, cache_dir=tmp_path)["faces"]
    assert not torch.equal(other.train.images, mini_built["faces"].train.images)


def test_cached_load_does_not_build(
    mini_built: dict[str, DomainData], mini_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt despite a valid cache")

    monkeypatch.setattr(mini, "_BUILDERS", dict.fromkeys(MINI_DOMAINS, no_build))
    again = load_data("mini", ["signs", "digits"], cache_dir=mini_cache)
    assert list(again) == ["digits", "signs"]  # canonical order, whatever order was asked
    assert torch.equal(again["signs"].val.images, mini_built["signs"].val.images)


def test_corrupt_cache_file_is_rebuilt(mini_built: dict[str, DomainData], tmp_path: Path) -> None:
    path = tmp_path / f"v{mini.MINI_VERSION}" / "faces_s36_seed0.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated")
    rebuilt = load_mini(["faces"], cache_dir=tmp_path)["faces"]
    assert torch.equal(rebuilt.test.images, mini_built["faces"].test.images)


def test_baseline_json_is_honoured(mini_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = tmp_path / "mini_baseline.json"
    baseline.write_text(json.dumps({"digits": 0.125}))
    monkeypatch.setattr(mini, "MINI_BASELINE_PATH", baseline)
    data = load_mini(["digits", "faces"], cache_dir=mini_cache)
    assert data["digits"].baseline_error == 0.125
    assert data["faces"].baseline_error is None
    baseline.write_text(json.dumps({"digits": 12.5}))
    with pytest.raises(ValueError, match="digits"):
        load_mini(["digits"], cache_dir=mini_cache)
    monkeypatch.setattr(mini, "MINI_BASELINE_PATH", tmp_path / "absent.json")
    assert load_mini(["digits"], cache_dir=mini_cache)["digits"].baseline_error is None


def test_bad_arguments(mini_cache: Path) -> None:
    with pytest.raises(KeyError, match="cifar.*allowed values.*digits"):
        load_mini(["cifar"], cache_dir=mini_cache)
    with pytest.raises(ValueError, match="crop"):
        load_mini(["faces"], crop=40, cache_dir=mini_cache)


def test_cli_info_and_show(mini_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_main(["info", "--data", "mini", "--cache-dir", str(mini_cache)])
    printed = capsys.readouterr().out
    assert all(name in printed for name in MINI_DOMAINS)
    out = tmp_path / "grid.png"
    cli_main(
        ["show", "--data", "mini", "--domains", "faces,signs", "--out", str(out)]
        + ["--cache-dir", str(mini_cache)]
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- prepare_batch ------------------------------------------------------------------------------------------


def _coded_domain(flip: bool, size: int = 8, crop: int = 6, batch: int = 64) -> DomainData:
    """Images whose pixel value encodes its position (row * size + col), so every crop can be located."""
    grid = (torch.arange(size)[:, None] * size + torch.arange(size)[None, :]).to(torch.uint8)
    images = grid.expand(batch, 3, size, size).contiguous()
    split = DomainSplit(images, torch.zeros(batch, dtype=torch.int64))
    return DomainData(
        name="coded",
        num_classes=1,
        train=split,
        val=split,
        test=DomainSplit.empty(size),
        mean=(0.0, 0.0, 0.0),
        std=(1 / 255, 1 / 255, 1 / 255),  # normalised values are the raw pixel values
        crop=crop,
        flip=flip,
        class_names=("only",),
    )


@pytest.mark.parametrize("flip", [False, True])
def test_train_crops_are_windows_of_the_input(flip: bool) -> None:
    data = _coded_domain(flip)
    out = prepare_batch(data.train.images, data, train=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 6, 6) and out.dtype == torch.float32
    values = out.round().long()
    flipped = 0
    for sample in values[:, 0]:
        top, left = divmod(int(sample[:, :].min()), 8)
        window = (torch.arange(top, top + 6)[:, None] * 8 + torch.arange(left, left + 6)[None, :]).long()
        if torch.equal(sample, window.flip(1)):
            flipped += 1
        else:
            assert torch.equal(sample, window)
        assert 0 <= top <= 2 and 0 <= left <= 2
    assert (flipped > 0) == flip
    assert torch.equal(values[:, 0], values[:, 2])  # one crop per sample, shared by its channels


def test_train_is_reproducible_with_a_seeded_generator() -> None:
    data = _coded_domain(flip=True)
    first = prepare_batch(data.train.images, data, train=True, generator=torch.Generator().manual_seed(3))
    second = prepare_batch(data.train.images, data, train=True, generator=torch.Generator().manual_seed(3))
    other = prepare_batch(data.train.images, data, train=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_eval_is_the_deterministic_centre_crop() -> None:
    data = _coded_domain(flip=True)
    out = prepare_batch(data.val.images, data, train=False)
    expected = data.val.images[:, :, 1:7, 1:7].float()
    assert torch.equal(out, expected)
    assert torch.equal(out, prepare_batch(data.val.images, data, train=False))


def test_normalisation_uses_domain_mean_and_std(mini_built: dict[str, DomainData]) -> None:
    d = mini_built["textures"]
    images = d.val.images[:16]
    out = prepare_batch(images, d, train=False)
    raw = images[:, :, 2:34, 2:34].float() / 255
    expected = (raw - torch.tensor(d.mean).view(1, 3, 1, 1)) / torch.tensor(d.std).view(1, 3, 1, 1)
    assert out.shape == (16, 3, 32, 32)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    whole = prepare_batch(d.train.images, d, train=True, generator=torch.Generator().manual_seed(0))
    assert whole.mean(dim=(0, 2, 3)).abs().max() < 0.2
    assert (whole.std(dim=(0, 2, 3)) - 1).abs().max() < 0.2


def test_prepare_batch_rejects_bad_input() -> None:
    data = _coded_domain(flip=False)
    with pytest.raises(ValueError, match="uint8"):
        prepare_batch(data.train.images.float(), data, train=True)
    with pytest.raises(ValueError, match="smaller than the crop"):
        prepare_batch(data.train.images[:, :, :4, :4], data, train=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_prepare_batch_stays_on_the_gpu() -> None:
    data = _coded_domain(flip=True)
    images = data.train.images.cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = prepare_batch(images, data, train=True, generator=gen)
    assert out.device == images.device and out.shape == (64, 3, 6, 6)
    cpu_gen_out = prepare_batch(images, data, train=True, generator=torch.Generator().manual_seed(0))
    assert cpu_gen_out.device == images.device


def test_unwritable_cache_warns_and_still_loads(mini_built: dict[str, DomainData], tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not write the data cache"):
        faces = load_mini(["faces"], cache_dir=blocker)["faces"]
    assert torch.equal(faces.train.images, mini_built["faces"].train.images)
