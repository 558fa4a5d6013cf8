"""Mini-decathlon domains made from real images that ship inside installed packages (no download).

- ``digits``: scikit-learn's 1,797 handwritten 8x8 digits, upsampled, each with its own ink/background colours
  (an SVHN stand-in).
- ``faces``: scikit-image's ``lfw_subset`` (100 LFW faces, then 100 non-face patches, 5 nearly blank ones
  dropped), split first, then augmented within each split so no image has a copy in another split.
- ``textures``: crops of eight texture-like scikit-image pictures (a DTD stand-in); each picture is cut into
  disjoint bands along its long side (60/20/20 %), and train, val and test crops come from their own band.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bap.data._mini_common import (
    SPLIT_FRACTIONS,
    RawDomain,
    RawSplit,
    pil_to_tensor,
    resize_float,
    split_by_index,
    stratified_split,
    to_uint8,
)

_FACE_COPIES = 3  # each face image yields itself plus two jittered copies, in its own split
_FLAT_STD = 0.01  # lfw_subset images with a smaller pixel std (in [0, 1] units) are blank patches
_TEXTURE_PER_CLASS = 150
_TEXTURE_CROP = (0.1, 0.2)  # crop side as a fraction of the picture's short side


def build_digits(size: int, rng: np.random.Generator) -> RawDomain:
    """10 classes, 1,797 images: grey digits recoloured with a random contrasting ink/background pair."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    strokes = np.pad(bunch.images / 16.0, ((0, 0), (1, 1), (1, 1)))  # a 1-px margin keeps digits off the edge
    alpha = resize_float(strokes, size).clamp(0.0, 1.0)  # (N, 1, S, S)
    n = alpha.shape[0]
    light_background = rng.random(n) < 0.5
    dark = rng.uniform(0.0, 0.35, (n, 3))
    light = rng.uniform(0.65, 1.0, (n, 3))
    background = np.where(light_background[:, None], light, dark)
    ink = np.where(light_background[:, None], dark, light)
    noise = rng.normal(0.0, 0.03, (n, 3, size, size))
    bg = torch.from_numpy(background.astype(np.float32))[:, :, None, None]
    fg = torch.from_numpy(ink.astype(np.float32))[:, :, None, None]
    images = to_uint8(bg + (fg - bg) * alpha + torch.from_numpy(noise.astype(np.float32)))
    splits = split_by_index(images, bunch.target, rng)
    return RawDomain(**splits, class_names=tuple(str(d) for d in range(10)))


def _jitter(image: np.ndarray, rng: np.random.Generator, flip: bool) -> np.ndarray:
    """Random crop (80-100 % of the side), optional mirror, brightness/contrast and noise; [0, 1] image."""
    side = image.shape[0]
    crop = int(rng.integers(round(0.8 * side), side + 1))
    top, left = rng.integers(0, side - crop + 1, size=2)
    out = image[top : top + crop, left : left + crop]
    out = out[:, ::-1] if flip else out
    gain, bias = rng.uniform(0.75, 1.25), rng.uniform(-0.1, 0.1)
    # Sensor-like noise keeps saturated copies (some non-face patches are nearly black) from being identical.
    out = (out - out.mean()) * gain + out.mean() + bias + rng.normal(0.0, 0.02, out.shape)
    return F.interpolate(
        torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))[None, None],
        size=(side, side),
        mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()


def build_faces(size: int, rng: np.random.Generator) -> RawDomain:
    """2 classes (face / not), 585 images: 195 LFW-subset images, split 60/20/20, then tripled per split."""
    from skimage.data import lfw_subset

    raw = lfw_subset().astype(np.float32)  # (200, 25, 25) grey in [0, 1]
    labels = np.repeat([0, 1], 100)  # the first 100 are faces, the last 100 are not (skimage docs)
    # Five non-face patches are flat (two all black): they carry nothing and would collide across splits.
    informative = raw.reshape(len(raw), -1).std(axis=1) > _FLAT_STD
    raw, labels = raw[informative], labels[informative]
    splits = {}
    for name, idx in zip(("train", "val", "test"), stratified_split(labels, rng)):
        images, targets = [], []
        for i in idx:
            images.append(raw[i])
            images.append(_jitter(raw[i], rng, flip=True))
            images.append(_jitter(raw[i], rng, flip=bool(rng.random() < 0.5)))
            targets += [labels[i]] * _FACE_COPIES
        splits[name] = RawSplit(
            to_uint8(resize_float(np.stack(images), size)), torch.tensor(targets, dtype=torch.int64)
        )
    return RawDomain(**splits, class_names=("face", "not_face"))


def _texture_sources() -> dict[str, Callable[[], np.ndarray]]:
    """Texture name -> loader of a uint8 ``(H, W, 3)`` picture (all bundled with scikit-image)."""
    from skimage import data

    def grey(fn: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
        return lambda: np.repeat(fn()[:, :, None], 3, axis=2)

    return {
        "brick": grey(data.brick),
        "grass": grey(data.grass),
        "gravel": grey(data.gravel),
        "moon": grey(data.moon),
        "print": grey(data.page),
        "stars": data.hubble_deep_field,
        "tissue": data.immunohistochemistry,
        "fundus": lambda: data.retina()[400:1000, 250:1150],  # inside the eye: vessels on orange
    }


def _texture_crops(
    picture: np.ndarray, count: int, band: tuple[float, float], size: int, rng: np.random.Generator
) -> torch.Tensor:
    """``count`` random square crops from the ``band`` (fractions of the long side) of ``picture``."""
    if picture.shape[0] > picture.shape[1]:
        picture = picture.transpose(1, 0, 2)
    height, width = picture.shape[:2]
    lo, hi = round(band[0] * width), round(band[1] * width)
    max_side = min(hi - lo, height)
    sides = [min(max_side, round(f * height)) for f in _TEXTURE_CROP]
    crops = []
    for _ in range(count):
        side = int(rng.integers(sides[0], sides[1] + 1))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(lo, hi - side + 1))
        crop = np.rot90(picture[top : top + side, left : left + side], k=int(rng.integers(4)))
        # PIL, not torch: 1,200 tiny resizes are single-threaded work (PIL's bilinear filter is area-aware).
        small = Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.Resampling.BILINEAR)
        crops.append(pil_to_tensor(small))
    return torch.stack(crops)


def build_textures(size: int, rng: np.random.Generator) -> RawDomain:
    """8 classes, 150 crops each (90/30/30), from disjoint bands of one scikit-image picture per class."""
    sources = _texture_sources()
    bands = {"train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)}
    per_split = {s: round(f * _TEXTURE_PER_CLASS) for s, f in zip(bands, SPLIT_FRACTIONS)}
    images: dict[str, list[torch.Tensor]] = {s: [] for s in bands}
    labels: dict[str, list[int]] = {s: [] for s in bands}
    for label, load in enumerate(sources.values()):
        picture = load()
        for split, band in bands.items():
            images[split].append(_texture_crops(picture, per_split[split], band, size, rng))
            labels[split] += [label] * per_split[split]
    splits = {s: RawSplit(torch.cat(images[s]), torch.tensor(labels[s], dtype=torch.int64)) for s in bands}
    return RawDomain(**splits, class_names=tuple(sources))
