"""Visual Decathlon loader against a tiny fake release in the exact on-disk format (paper.md §6)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

import bap.data.decathlon as decathlon
from bap.data import DomainSplit, available_domains, load_data, load_decathlon

pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)

SIZE, CROP = 16, 12
# Per domain: the offset of its category ids, and the colour of each class in sorted-id order.
FAKE = {
    "aircraft": (10000001, [(220, 30, 30), (30, 200, 40), (40, 60, 220)]),
    "gtsrb": (50000001, [(240, 240, 40), (20, 20, 20)]),
}
PER_CLASS = {"train": 4, "val": 2, "test": 2}


def _write_split(root: Path, domain: str, split: str, rng: random.Random) -> None:
    offset, colours = FAKE[domain]
    category_ids = [offset + 7 * rank for rank in range(len(colours))]  # offset, non-contiguous ids
    images, annotations = [], []
    image_id = 1000 * (1 + list(FAKE).index(domain))
    for rank, colour in enumerate(colours):
        for _ in range(PER_CLASS[split]):
            image_id += rng.randint(1, 5)  # sparse ids
            file_name = f"data/{domain}/{split}/{image_id:06d}.jpg"
            path = root / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            width, height = rng.choice([(40, 24), (24, 40), (30, 30)])
            Image.new("RGB", (width, height), colour).save(path, "JPEG", quality=95)
            images.append({"id": image_id, "width": width, "height": height, "file_name": file_name})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": category_ids[rank]})
    rng.shuffle(images)
    rng.shuffle(annotations)  # labels must be paired by image_id, not by position
    categories = [{"id": cid, "name": f"class_{cid}", "supercategory": domain} for cid in category_ids]
    rng.shuffle(categories)  # labels must follow the sorted ids, not the listed order
    payload = {
        "info": {},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    ann = root / "annotations" / f"{domain}_{split}.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(payload))


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """``tmp_path/decathlon-1.0`` with aircraft (train/val/test) and gtsrb (train/val, no labelled test)."""
    root = tmp_path / "decathlon-1.0"
    rng = random.Random(0)
    for domain in FAKE:
        for split in ("train", "val", "test") if domain == "aircraft" else ("train", "val"):
            _write_split(root, domain, split, rng)
    return root


def _load(root: Path, tmp_path: Path, **kwargs):
    return load_decathlon(root, size=SIZE, crop=CROP, cache_dir=tmp_path / "cache", workers=2, **kwargs)


def _label_from_colour(images: torch.Tensor, domain: str) -> torch.Tensor:
    """The class whose colour is nearest to each image's mean colour."""
    colours = torch.tensor(FAKE[domain][1], dtype=torch.float32)
    means = images.float().mean(dim=(2, 3))
    return torch.cdist(means, colours).argmin(dim=1)


def test_shapes_labels_and_recipe(fake_root: Path, tmp_path: Path) -> None:
    data = _load(fake_root, tmp_path)
    assert list(data) == ["aircraft", "gtsrb"]
    for name, d in data.items():
        n_classes = len(FAKE[name][1])
        assert d.num_classes == n_classes
        assert d.class_names == tuple(f"class_{FAKE[name][0] + 7 * r}" for r in range(n_classes))
        assert (d.crop, d.size) == (CROP, SIZE)
        for split in ("train", "val"):
            part = d.split(split)
            assert part.images.shape == (n_classes * PER_CLASS[split], 3, SIZE, SIZE)
            assert part.images.dtype == torch.uint8 and part.labels.dtype == torch.int64
            # Labels are ranks of sorted category ids, paired by image_id: the colour must agree.
            assert torch.equal(part.labels, _label_from_colour(part.images, name))
    assert data["aircraft"].flip and not data["gtsrb"].flip
    assert data["aircraft"].baseline_error == pytest.approx(1 - 0.6034)


def test_test_split_present_only_with_labelled_json(fake_root: Path, tmp_path: Path) -> None:
    data = _load(fake_root, tmp_path)
    assert len(data["aircraft"].test) == 3 * PER_CLASS["test"]
    assert torch.equal(
        data["aircraft"].test.labels, _label_from_colour(data["aircraft"].test.images, "aircraft")
    )
    assert data["gtsrb"].test.images.shape == (0, 3, SIZE, SIZE)
    assert data["gtsrb"].test.labels.shape == (0,)


def test_mean_std_from_train_split(fake_root: Path, tmp_path: Path) -> None:
    d = _load(fake_root, tmp_path)["gtsrb"]
    x = d.train.images.double() / 255
    assert d.mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert d.std == pytest.approx(x.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-9)


def test_second_load_reads_cache_without_decoding(
    fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _load(fake_root, tmp_path)
    assert sorted(p.name for p in (tmp_path / "cache" / "decathlon").iterdir()) == [
        f"aircraft_{s}_{SIZE}.pt" for s in ("test", "train", "val")
    ] + [f"gtsrb_{s}_{SIZE}.pt" for s in ("train", "val")]

    def no_decode(*args, **kwargs):
        raise AssertionError("JPEG decoded on a cache hit")

    monkeypatch.setattr(decathlon, "decode_resized", no_decode)
    second = _load(fake_root, tmp_path)
    for name in first:
        for split in ("train", "val", "test"):
            assert torch.equal(first[name].split(split).images, second[name].split(split).images)
            assert torch.equal(first[name].split(split).labels, second[name].split(split).labels)
        assert first[name].mean == second[name].mean


def test_changed_annotation_invalidates_cache(fake_root: Path, tmp_path: Path) -> None:
    assert len(_load(fake_root, tmp_path, domains=["gtsrb"])["gtsrb"].val) == 4
    ann_path = fake_root / "annotations" / "gtsrb_val.json"
    ann = json.loads(ann_path.read_text())
    ann["images"] = ann["images"][:3]
    ann_path.write_text(json.dumps(ann))
    assert len(_load(fake_root, tmp_path, domains=["gtsrb"])["gtsrb"].val) == 3


def test_parent_folder_default_cache_and_load_data(
    fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BAP_CACHE_DIR", raising=False)
    assert available_domains(str(tmp_path)) == ["aircraft", "gtsrb"]
    data = load_data(str(tmp_path), ["gtsrb"], workers=1)  # the parent of decathlon-1.0 is accepted
    assert list(data) == ["gtsrb"] and data["gtsrb"].crop == 64 and data["gtsrb"].size == 72
    assert (fake_root / ".bap_cache" / "decathlon" / "gtsrb_train_72.pt").is_file()


def test_domain_without_images_is_not_available(fake_root: Path) -> None:
    (fake_root / "annotations" / "dtd_train.json").write_text("{}")
    (fake_root / "annotations" / "dtd_val.json").write_text("{}")
    assert available_domains(str(fake_root)) == ["aircraft", "gtsrb"]


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_decathlon(tmp_path / "nowhere", cache_dir=tmp_path)


def test_root_without_annotations(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="annotations"):
        load_decathlon(tmp_path, cache_dir=tmp_path)


def test_missing_annotation_file(fake_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dtd_train.json"):
        _load(fake_root, tmp_path, domains=["dtd"])
    (fake_root / "annotations" / "gtsrb_val.json").unlink()
    with pytest.raises(FileNotFoundError, match="gtsrb_val.json"):
        _load(fake_root, tmp_path, domains=["gtsrb"])


def test_unknown_domain(fake_root: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="mnist.*allowed values.*aircraft"):
        _load(fake_root, tmp_path, domains=["mnist"])


def test_listed_but_missing_image(fake_root: Path, tmp_path: Path) -> None:
    victim = sorted((fake_root / "data" / "gtsrb" / "train").iterdir())[2]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.name):
        _load(fake_root, tmp_path, domains=["gtsrb"])


def test_corrupt_jpeg_is_skipped_with_warning(fake_root: Path, tmp_path: Path) -> None:
    victim = sorted((fake_root / "data" / "gtsrb" / "train").iterdir())[0]
    victim.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.warns(UserWarning, match=rf"skipped 1 of 8 .*{victim.name}"):
        data = _load(fake_root, tmp_path, domains=["gtsrb"])
    assert len(data["gtsrb"].train) == 7
    assert torch.equal(data["gtsrb"].train.labels, _label_from_colour(data["gtsrb"].train.images, "gtsrb"))
    with pytest.warns(UserWarning, match="skipped 1 of 8"):  # still reported when read from the cache
        _load(fake_root, tmp_path, domains=["gtsrb"])


def test_all_images_corrupt(fake_root: Path, tmp_path: Path) -> None:
    for path in (fake_root / "data" / "gtsrb" / "val").iterdir():
        path.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="none of the 4 images"):
        _load(fake_root, tmp_path, domains=["gtsrb"])


def test_domain_split_validates() -> None:
    with pytest.raises(ValueError, match="uint8"):
        DomainSplit(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        DomainSplit(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
