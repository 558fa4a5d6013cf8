"""ImageNet-to-Sketch loader against a tiny generated tree in Piggyback's layout, and the ``load_data`` dispatch."""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import bap.data.decathlon as decathlon
import bap.data.mini as mini
import bap.data.sketch as sketch
from bap.data import SKETCH_DOMAINS, available_domains, data_format, load_data, load_sketch
from bap.data.load import MINI_CROP, MINI_SIZE
from bap.data.sketch import find_domain_folders, holdout_indices, is_sketch_root, sketch_domains_on_disk
from tests.bap.sketch_tree import class_colour, class_name, make_sketch_tree

pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)

SIZE, CROP = 20, 16
CLASSES, TRAIN, TEST = 3, 5, 2


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_sketch_tree(tmp_path / "sketch", classes=CLASSES, train_per_class=TRAIN, test_per_class=TEST)


def _load(root: Path, tmp_path: Path, **kwargs):
    kwargs.setdefault("cache_dir", tmp_path / "cache")
    return load_sketch(root, size=SIZE, crop=CROP, workers=2, **kwargs)


def _label_from_colour(images: torch.Tensor, classes: int = CLASSES) -> torch.Tensor:
    colours = torch.tensor([class_colour(c, classes) for c in range(classes)], dtype=torch.float32)
    return torch.cdist(images.float().mean(dim=(2, 3)), colours).argmin(dim=1)


def _hashes(images: torch.Tensor) -> set[str]:
    return {hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in images}


def _mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose memory mapping holds ``tensor``'s data, from ``/proc/self/maps`` (None if not mapped).

    ``torch.load(mmap=True)`` gives plain ``UntypedStorage`` objects with no ``filename``, so the address is the
    only robust witness that the data is read from the page cache and not copied.
    """
    if tensor.numel() == 0:
        return None
    address = tensor.data_ptr()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[5].strip() if len(fields) == 6 else None
    return None


needs_proc = pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc/self/maps")


# ---------------------------------------------------------------- layout detection


def test_layout_detection(root: Path, tmp_path: Path) -> None:
    assert SKETCH_DOMAINS[0] == "imagenet" and len(SKETCH_DOMAINS) == 6
    assert sketch_domains_on_disk(root) == ["cubs_cropped", "flowers"]
    assert find_domain_folders(root) == {"cubs_cropped": root / "cubs_cropped", "flowers": root / "flowers"}
    assert is_sketch_root(root) and data_format(root) == "sketch" and data_format(str(root)) == "sketch"
    assert available_domains(str(root)) == ["cubs_cropped", "flowers"]
    # A domain folder without test/ does not count; an unrelated folder is no sketch root.
    (root / "wikiart" / "train" / "a").mkdir(parents=True)
    assert sketch_domains_on_disk(root) == ["cubs_cropped", "flowers"]
    assert not is_sketch_root(tmp_path / "nowhere") and not is_sketch_root(tmp_path)
    assert find_domain_folders(tmp_path / "nowhere") == {}


def test_img_extensions_match_torchvision() -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert sketch.IMG_EXTENSIONS == IMG_EXTENSIONS


def test_domain_listing_does_not_import_torch(root: Path) -> None:
    code = (
        "import sys; from bap.data import available_domains, data_format; "
        f"assert data_format({str(root)!r}) == 'sketch'; "
        f"assert available_domains({str(root)!r}) == ['cubs_cropped', 'flowers']; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_case_insensitive_folder_names(tmp_path: Path) -> None:
    root = make_sketch_tree(
        tmp_path / "r",
        ("cubs_cropped", "stanford_cars_cropped"),
        folder_names=["CUBS_Cropped", "Stanford_Cars_CROPPED"],
    )
    assert sketch_domains_on_disk(root) == ["cubs_cropped", "stanford_cars_cropped"]
    data = _load(root, tmp_path, domains=["stanford_cars_cropped", "cubs_cropped"])
    assert list(data) == ["cubs_cropped", "stanford_cars_cropped"]  # canonical order, canonical names
    assert data["cubs_cropped"].name == "cubs_cropped"
    assert (tmp_path / "cache" / "sketch" / f"stanford_cars_cropped_train_{SIZE}.pt").is_file()


def test_ambiguous_folder_names(tmp_path: Path) -> None:
    root = make_sketch_tree(tmp_path / "r", ("flowers",))
    make_sketch_tree(root, ("flowers",), folder_names={"flowers": "FLOWERS"})
    if len({p.name.lower() for p in root.iterdir()}) == len(list(root.iterdir())):
        pytest.skip("case-insensitive file system")
    with pytest.raises(ValueError, match="ambiguous.*FLOWERS.*flowers|ambiguous.*flowers.*FLOWERS"):
        _load(root, tmp_path)
    assert is_sketch_root(root)


# ---------------------------------------------------------------- contents


def test_shapes_labels_and_recipe(root: Path, tmp_path: Path) -> None:
    data = _load(root, tmp_path)
    assert list(data) == ["cubs_cropped", "flowers"]
    for name, d in data.items():
        assert d.name == name and d.num_classes == CLASSES
        assert d.class_names == tuple(class_name(c) for c in range(CLASSES))
        assert (d.size, d.crop, d.flip, d.baseline_error) == (SIZE, CROP, True, None)
        assert (len(d.train), len(d.val), len(d.test)) == (CLASSES * (TRAIN - 1), CLASSES, CLASSES * TEST)
        for split in ("train", "val", "test"):
            part = d.split(split)
            assert part.images.dtype == torch.uint8 and part.images.shape[1:] == (3, SIZE, SIZE)
            assert part.labels.dtype == torch.int64
            # Label i is the i-th sorted class folder of train/: the colour written there must agree.
            assert torch.equal(part.labels, _label_from_colour(part.images)), (name, split)
        x = d.train.images.double() / 255
        assert d.mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
        assert d.std == pytest.approx(x.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-9)


def test_val_holdout_stratified_disjoint_deterministic(root: Path, tmp_path: Path) -> None:
    d = _load(root, tmp_path, domains=["cubs_cropped"], val_fraction=0.4)["cubs_cropped"]
    assert torch.bincount(d.val.labels, minlength=CLASSES).tolist() == [2] * CLASSES  # round(0.4 * 5)
    assert torch.bincount(d.train.labels, minlength=CLASSES).tolist() == [3] * CLASSES
    assert not _hashes(d.train.images) & _hashes(d.val.images)
    assert len(_hashes(d.train.images) | _hashes(d.val.images)) == CLASSES * TRAIN  # nothing lost
    again = _load(root, tmp_path, domains=["cubs_cropped"], val_fraction=0.4, cache_dir=tmp_path / "other")
    assert torch.equal(again["cubs_cropped"].val.images, d.val.images)
    reseeded = _load(root, tmp_path, domains=["cubs_cropped"], val_fraction=0.4, seed=1)["cubs_cropped"]
    assert _hashes(reseeded.val.images) != _hashes(d.val.images)
    assert _hashes(reseeded.val.images) | _hashes(reseeded.train.images) == _hashes(d.val.images) | _hashes(
        d.train.images
    )


def test_holdout_counts() -> None:
    names = ["a", "b", "c", "d"]
    labels = [0] * 1 + [1] * 2 + [2] * 20 + [3] * 10
    train, val = holdout_indices(labels, names, 0.1, seed=3)
    held = [labels[i] for i in val]
    assert [held.count(c) for c in range(4)] == [
        0,
        1,
        2,
        1,
    ]  # a 1-image class keeps it; >= 2 images: >= 1 out
    assert sorted(train + val) == list(range(len(labels))) and not set(train) & set(val)
    assert holdout_indices(labels, names, 0.1, seed=3) == (train, val)
    assert holdout_indices(labels, names, 0.0, seed=3) == (list(range(len(labels))), [])
    _, most = holdout_indices(labels, names, 0.99, seed=0)
    assert [[labels[i] for i in most].count(c) for c in range(4)] == [0, 1, 19, 9]  # train keeps every class
    # Seeded by class name: adding a class does not move the others' hold-out.
    _, fewer = holdout_indices(labels[:23], names[:3], 0.1, seed=3)
    assert fewer == [i for i in val if i < 23]


def test_zero_val_fraction(root: Path, tmp_path: Path) -> None:
    d = _load(root, tmp_path, domains=["flowers"], val_fraction=0.0)["flowers"]
    assert len(d.val) == 0 and d.val.images.shape == (0, 3, SIZE, SIZE) and len(d.train) == CLASSES * TRAIN
    assert len(_load(root, tmp_path, domains=["flowers"], val_fraction=0.0)["flowers"].val) == 0  # cached


def test_test_classes_may_be_a_subset(root: Path, tmp_path: Path) -> None:
    for path in (root / "flowers" / "test" / class_name(0)).iterdir():
        path.unlink()
    (root / "flowers" / "test" / class_name(0)).rmdir()
    d = _load(root, tmp_path, domains=["flowers"])["flowers"]
    assert d.num_classes == CLASSES and len(d.test) == (CLASSES - 1) * TEST
    assert sorted(set(d.test.labels.tolist())) == list(range(1, CLASSES))
    assert torch.equal(d.test.labels, _label_from_colour(d.test.images))


def test_other_formats_nested_folders_and_ignored_files(root: Path, tmp_path: Path) -> None:
    class_dir = root / "flowers" / "train" / class_name(1)
    colour = class_colour(1, CLASSES)
    Image.new("RGB", (41, 33), colour).save(class_dir / "extra.BMP", "BMP")  # torchvision cannot decode BMP
    (class_dir / "nested").mkdir()
    Image.new("RGB", (33, 47), colour).save(class_dir / "nested" / "deep.tiff", "TIFF")
    (class_dir / ".hidden.jpg").write_bytes(b"not looked at")
    (root / "flowers" / "train" / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    d = _load(root, tmp_path, domains=["flowers"], val_fraction=0.0)["flowers"]
    assert d.num_classes == CLASSES and len(d.train) == CLASSES * TRAIN + 2
    assert torch.equal(d.train.labels, _label_from_colour(d.train.images))


# ---------------------------------------------------------------- cache


@needs_proc
def test_second_load_reads_memory_mapped_cache_without_decoding(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _load(root, tmp_path)
    cache = tmp_path / "cache" / "sketch"
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"{d}_{s}_{SIZE}.pt" for d in ("cubs_cropped", "flowers") for s in ("train", "val", "test")
    )
    # Even the packing load returns the tensors mapped from the file it wrote, not the decoded copy.
    assert _mapped_file(first["flowers"].train.images) == str(cache / f"flowers_train_{SIZE}.pt")

    def no_decode(*args, **kwargs):
        raise AssertionError("image decoded on a cache hit")

    monkeypatch.setattr(sketch, "_decode", no_decode)
    monkeypatch.setattr(sketch, "decode_resized", no_decode)
    monkeypatch.setattr(decathlon, "decode_resized", no_decode)
    second = _load(root, tmp_path)
    for name in first:
        for split in ("train", "val", "test"):
            a, b = first[name].split(split), second[name].split(split)
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
            assert _mapped_file(b.images) == str(cache / f"{name}_{split}_{SIZE}.pt")
            assert _mapped_file(b.labels) == str(cache / f"{name}_{split}_{SIZE}.pt")
        assert first[name].mean == second[name].mean and first[name].std == second[name].std


def test_edited_tree_rebuilds(root: Path, tmp_path: Path) -> None:
    d = _load(root, tmp_path, domains=["cubs_cropped"])["cubs_cropped"]
    assert len(d.train) + len(d.val) == CLASSES * TRAIN
    test_pack = tmp_path / "cache" / "sketch" / f"cubs_cropped_test_{SIZE}.pt"
    stamp = test_pack.stat().st_mtime_ns
    Image.new("RGB", (40, 31), class_colour(2, CLASSES)).save(
        root / "cubs_cropped" / "train" / class_name(2) / "new.png"
    )
    d = _load(root, tmp_path, domains=["cubs_cropped"])["cubs_cropped"]
    assert len(d.train) + len(d.val) == CLASSES * TRAIN + 1
    assert test_pack.stat().st_mtime_ns == stamp  # test/ unchanged: its pack is kept
    victim = next((root / "cubs_cropped" / "test" / class_name(0)).iterdir())
    victim.unlink()
    assert len(_load(root, tmp_path, domains=["cubs_cropped"])["cubs_cropped"].test) == CLASSES * TEST - 1


def test_default_cache_dir(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BAP_CACHE_DIR", raising=False)
    load_sketch(root, ["flowers"], size=SIZE, crop=CROP, workers=1)
    assert (root / ".bap_cache" / "sketch" / f"flowers_train_{SIZE}.pt").is_file()
    assert sketch_domains_on_disk(root) == ["cubs_cropped", "flowers"]  # the cache folder is no domain
    monkeypatch.setenv("BAP_CACHE_DIR", str(tmp_path / "env"))
    load_sketch(root, ["flowers"], size=SIZE, crop=CROP, workers=1)
    assert (tmp_path / "env" / "sketch" / f"flowers_val_{SIZE}.pt").is_file()


def test_unwritable_cache_warns_and_returns_memory(root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="could not write the data cache"):
        d = _load(root, tmp_path, domains=["flowers"], cache_dir=blocker)["flowers"]
    assert len(d.train) == CLASSES * (TRAIN - 1)
    assert torch.equal(d.train.labels, _label_from_colour(d.train.images))


# ---------------------------------------------------------------- errors


def test_unknown_domain(root: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="mnist.*allowed values.*imagenet, cubs_cropped"):
        _load(root, tmp_path, domains=["mnist"])


def test_requested_domain_missing(root: Path, tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=rf"'wikiart' not found under {root}.*cubs_cropped/, flowers/"
    ):
        _load(root, tmp_path, domains=["wikiart"])


def test_missing_root_and_no_domain(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="root folder not found.*nowhere"):
        load_sketch(tmp_path / "nowhere", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=rf"no ImageNet-to-Sketch domain under {tmp_path / 'empty'}"):
        load_sketch(tmp_path / "empty", cache_dir=tmp_path)


def test_missing_split_folder(root: Path, tmp_path: Path) -> None:
    (root / "flowers" / "test").rename(root / "flowers" / "testing")
    with pytest.raises(FileNotFoundError, match=r"flowers: .*flowers has no test/ folder"):
        _load(root, tmp_path, domains=["flowers"])
    with pytest.warns(UserWarning, match="skipping .*flowers, which has no test/"):
        assert list(_load(root, tmp_path)) == ["cubs_cropped"]
    (root / "cubs_cropped" / "train").rename(root / "cubs_cropped" / "training")
    with pytest.raises(
        FileNotFoundError, match=r"no ImageNet-to-Sketch domain.*cubs_cropped/ \(train missing\)"
    ):
        _load(root, tmp_path)


def test_no_class_folder(root: Path, tmp_path: Path) -> None:
    train = root / "flowers" / "train"
    for c in range(CLASSES):
        (train / class_name(c)).rename(root / f"moved_{c}")
    with pytest.raises(ValueError, match=rf"flowers: no class folder in {train}"):
        _load(root, tmp_path, domains=["flowers"])


@pytest.mark.parametrize("split", ["train", "test"])
def test_class_folder_without_image(root: Path, tmp_path: Path, split: str) -> None:
    empty = root / "flowers" / split / class_name(1)
    for path in empty.iterdir():
        if path.suffix != ".txt":
            path.unlink()
    with pytest.raises(ValueError, match=rf"flowers: class folder {empty} holds no image"):
        _load(root, tmp_path, domains=["flowers"])


def test_test_class_not_in_train(root: Path, tmp_path: Path) -> None:
    extra = root / "flowers" / "test" / "999.unknown"
    extra.mkdir()
    Image.new("RGB", (32, 40), (1, 2, 3)).save(extra / "x.jpg")
    test_dir, train_dir = root / "flowers" / "test", root / "flowers" / "train"
    with pytest.raises(
        ValueError, match=rf"flowers: {test_dir} has 1 class.*{train_dir} lacks.*999\.unknown"
    ):
        _load(root, tmp_path, domains=["flowers"])


def test_undecodable_image_is_an_error(root: Path, tmp_path: Path) -> None:
    victim = sorted((root / "cubs_cropped" / "test" / class_name(2)).iterdir())[0]
    victim.write_bytes(b"\xff\xd8 this is not an image")
    with pytest.raises(
        ValueError, match=rf"cubs_cropped/test: 1 image file\(s\) cannot be decoded.*{victim}"
    ):
        _load(root, tmp_path, domains=["cubs_cropped"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"val_fraction": -0.1}, r"val_fraction must be in \[0, 1\)"),
        ({"crop": 0}, "crop must be in 1..size=20"),
        ({"crop": 21}, "crop must be in 1..size=20"),
        ({"size": 0, "crop": 1}, "size must be a positive"),
    ],
)
def test_bad_arguments(root: Path, tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"size": SIZE, "crop": CROP, "cache_dir": tmp_path, **kwargs}
    with pytest.raises(ValueError, match=match):
        load_sketch(root, **args)


# ---------------------------------------------------------------- load_data dispatch


def test_load_data_dispatch(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, tuple, dict]] = []

    def stub(kind: str):
        def record(*args, **kwargs):
            calls.append((kind, args, kwargs))
            return {}

        return record

    monkeypatch.setattr(mini, "load_mini", stub("mini"))
    monkeypatch.setattr(decathlon, "load_decathlon", stub("decathlon"))
    monkeypatch.setattr(sketch, "load_sketch", stub("sketch"))

    assert data_format("mini") == "mini"
    load_data("mini", ["digits"], seed=3, size=MINI_SIZE, crop=MINI_CROP)
    assert calls.pop() == ("mini", (["digits"],), {"seed": 3, "cache_dir": None})
    for field in ("size", "crop"):
        with pytest.raises(ValueError, match=rf"{field}=40 is not available for the mini-decathlon"):
            load_data("mini", **{field: 40})

    for deca in (tmp_path / "d1", tmp_path / "d2" / "decathlon-1.0"):
        (deca / "annotations").mkdir(parents=True)
    for spec in (tmp_path / "d1", tmp_path / "d2", tmp_path / "d2" / "decathlon-1.0"):
        assert data_format(spec) == "decathlon"
    load_data(str(tmp_path / "d2"), workers=2)
    kind, _, kwargs = calls.pop()
    assert kind == "decathlon" and (kwargs["size"], kwargs["crop"], kwargs["workers"]) == (72, 64, 2)
    load_data(str(tmp_path / "d1"), size=40, crop=32)
    assert (calls[-1][2]["size"], calls.pop()[2]["crop"]) == (40, 32)

    load_data(str(root), ["flowers"], seed=5)
    kind, args, kwargs = calls.pop()
    assert kind == "sketch" and args == (str(root), ["flowers"])
    assert (kwargs["size"], kwargs["crop"], kwargs["seed"]) == (224, 224, 5)


def test_load_data_reads_sketch(root: Path, tmp_path: Path) -> None:
    data = load_data(str(root), ["flowers"], cache_dir=tmp_path / "c", workers=2, size=SIZE, crop=CROP)
    assert list(data) == ["flowers"] and (data["flowers"].size, data["flowers"].crop) == (SIZE, CROP)
    assert (tmp_path / "c" / "sketch" / f"flowers_test_{SIZE}.pt").is_file()


def test_mini_constants_match_load_mini() -> None:
    params = inspect.signature(mini.load_mini).parameters
    assert (params["size"].default, params["crop"].default) == (MINI_SIZE, MINI_CROP)


def test_unknown_layout(tmp_path: Path) -> None:
    (tmp_path / "photos" / "train").mkdir(parents=True)
    for spec in (tmp_path, tmp_path / "photos"):
        with pytest.raises(
            FileNotFoundError, match="no known data layout.*Visual Decathlon.*ImageNet-to-Sketch"
        ):
            load_data(str(spec))
        with pytest.raises(FileNotFoundError, match="no known data layout"):
            available_domains(str(spec))
    with pytest.raises(FileNotFoundError, match="data folder not found.*'mini'.*Visual Decathlon.*Sketch"):
        data_format(tmp_path / "missing")
    assert os.listdir(tmp_path) == ["photos"]  # nothing written
