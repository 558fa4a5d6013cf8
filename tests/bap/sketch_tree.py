"""A tiny ImageNet-to-Sketch tree in Piggyback's layout, for tests, dry runs and short training runs.

``make_sketch_tree(root)`` writes ``root/<domain>/{train,test}/<class>/<image>`` with small JPEG and PNG
images of varied, non-square sizes. Each image is a flat class colour with mild noise, so a tiny network learns
the classes in a few steps. The same arguments give the same files (pixel for pixel).
"""

from __future__ import annotations

import colorsys
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

MIN_SIDE, MAX_SIDE = 30, 60


def class_name(index: int) -> str:
    """Name of class folder ``index``; names sort in index order, so label ``i`` is ``class_name(i)``."""
    return f"{index + 1:03d}.class_{index}"


def class_colour(index: int, classes: int) -> tuple[int, int, int]:
    """RGB colour of class ``index`` out of ``classes``: hues spread evenly around the colour wheel."""
    r, g, b = colorsys.hsv_to_rgb(index / max(classes, 1), 0.85, 0.9)
    return round(r * 255), round(g * 255), round(b * 255)


def _write_image(path: Path, colour: tuple[int, int, int], rng: random.Random) -> None:
    width, height = rng.randint(MIN_SIDE, MAX_SIDE), rng.randint(MIN_SIDE, MAX_SIDE)
    if width == height:
        width += 1
    noise = np.random.default_rng(rng.getrandbits(32)).integers(-12, 13, size=(height, width, 3))
    pixels = np.clip(np.array(colour, dtype=np.int64) + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if path.suffix == ".png":
        image.save(path, "PNG")
    else:
        image.save(path, "JPEG", quality=90)


def make_sketch_tree(
    root: str | Path,
    domains: Sequence[str] = ("cubs_cropped", "flowers"),
    classes: int = 3,
    train_per_class: int = 5,
    test_per_class: int = 2,
    seed: int = 0,
    folder_names: Mapping[str, str] | Sequence[str] | None = None,
) -> Path:
    """Write a small ImageNet-to-Sketch tree under ``root`` and return ``root``.

    Args:
        root: folder to write into (created if needed).
        domains: canonical domain names to write.
        classes: class folders per domain (``class_name(0..classes-1)``), in both train/ and test/.
        train_per_class: images per class folder of ``train/``.
        test_per_class: images per class folder of ``test/``.
        seed: fixes image sizes, file formats and noise.
        folder_names: on-disk folder name per domain (``{"cubs_cropped": "CUBS_Cropped"}``, or a sequence
            parallel to ``domains``); default the canonical name.

    Each domain folder also gets a ``README.txt`` and each train class folder a ``notes.txt``, which a
    loader must ignore.
    """
    root = Path(root)
    if folder_names is None:
        names = {d: d for d in domains}
    elif isinstance(folder_names, Mapping):
        names = {d: folder_names.get(d, d) for d in domains}
    else:
        names = dict(zip(domains, folder_names, strict=True))
    rng = random.Random(seed)
    for domain in domains:
        folder = root / names[domain]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "README.txt").write_text(f"fake {domain} for tests\n")
        for split, per_class in (("train", train_per_class), ("test", test_per_class)):
            for c in range(classes):
                class_dir = folder / split / class_name(c)
                class_dir.mkdir(parents=True, exist_ok=True)
                if split == "train":
                    (class_dir / "notes.txt").write_text("not an image\n")
                for i in range(per_class):
                    suffix = ".png" if rng.random() < 0.3 else ".jpg"
                    _write_image(class_dir / f"{domain}_{c}_{i:03d}{suffix}", class_colour(c, classes), rng)
    return root
