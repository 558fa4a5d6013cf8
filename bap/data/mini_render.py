"""Mini-decathlon domains drawn with PIL (no download).

- ``glyphs``: an Omniglot stand-in. 24 capital letters (8 Latin, 8 Greek, 8 Cyrillic, none shared between
  scripts) in the DejaVu fonts that matplotlib ships, dark ink on light paper, with random font, weight, size,
  stroke, rotation and shift.
- ``signs``: a GTSRB stand-in. 10 traffic-sign-like classes (shape x colour x inner symbol, with fine-grained
  pairs such as 30/60 and ahead/right), on cluttered backgrounds, with random position, scale, tilt and
  lighting.

Everything is drawn at ``_SUPERSAMPLE`` times the stored size and downsampled, so edges are antialiased.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from bap.data._mini_common import RawDomain, pil_to_tensor, split_by_index

_SUPERSAMPLE = 3
_GLYPHS_PER_CLASS = 50
_SIGNS_PER_CLASS = 120

LETTERS: dict[str, str] = {"latin": "AFGKQRSZ", "greek": "ΔΘΛΞΠΣΨΩ", "cyrillic": "БЖИФЦШЮЯ"}
_GLYPH_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
)

Colour = tuple[int, int, int]


@cache
def _font(name: str, pixels: int) -> ImageFont.FreeTypeFont:
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    return ImageFont.truetype(str(path), pixels)


def _glyph(letter: str, size: int, rng: np.random.Generator) -> Image.Image:
    side = size * _SUPERSAMPLE
    paper = int(rng.integers(215, 256))
    ink = int(rng.integers(0, 50))
    canvas = Image.new("L", (side, side), paper)
    font = _font(_GLYPH_FONTS[int(rng.integers(len(_GLYPH_FONTS)))], int(side * rng.uniform(0.5, 0.75)))
    centre = (side / 2 + rng.uniform(-0.08, 0.08) * side, side / 2 + rng.uniform(-0.08, 0.08) * side)
    stroke = int(rng.integers(0, _SUPERSAMPLE + 1))
    ImageDraw.Draw(canvas).text(
        centre, letter, fill=ink, font=font, anchor="mm", stroke_width=stroke, stroke_fill=ink
    )
    canvas = canvas.rotate(rng.uniform(-20, 20), resample=Image.Resampling.BILINEAR, fillcolor=paper)
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def build_glyphs(size: int, rng: np.random.Generator) -> RawDomain:
    """24 classes, 50 renderings each."""
    letters = [(script, ch) for script, chars in LETTERS.items() for ch in chars]
    images, labels = [], []
    for label, (_, ch) in enumerate(letters):
        for _ in range(_GLYPHS_PER_CLASS):
            images.append(pil_to_tensor(_glyph(ch, size, rng)))
            labels.append(label)
    splits = split_by_index(torch.stack(images), np.array(labels), rng)
    return RawDomain(**splits, class_names=tuple(f"{script}_{ch}" for script, ch in letters))


# --- signs --------------------------------------------------------------------------------------------------

SIGN_CLASSES: tuple[str, ...] = (
    "stop",
    "no_entry",
    "speed_30",
    "speed_60",
    "warning",
    "yield",
    "priority",
    "ahead",
    "turn_right",
    "end_limits",
)


def _jitter_colour(rgb: Colour, rng: np.random.Generator, spread: int = 25) -> Colour:
    r, g, b = (int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in rgb)
    return r, g, b


def _polygon(cx: float, cy: float, radius: float, sides: int, start_deg: float) -> list[tuple[float, float]]:
    """Vertices of a regular polygon; ``start_deg`` = 90 puts a vertex straight up."""
    step = 360.0 / sides
    return [
        (
            cx + radius * math.cos(math.radians(start_deg + k * step)),
            cy - radius * math.sin(math.radians(start_deg + k * step)),
        )
        for k in range(sides)
    ]


def _shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, radius: float, fill: Colour) -> None:
    if kind == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
        return
    sides, start = {"octagon": (8, 22.5), "up": (3, 90.0), "down": (3, -90.0), "diamond": (4, 90.0)}[kind]
    draw.polygon(_polygon(cx, cy, radius, sides, start), fill=fill)


def _arrow(draw: ImageDraw.ImageDraw, cx: float, cy: float, radius: float, right: bool, fill: Colour) -> None:
    # An upward arrow in units of the radius; (x, y) -> (y', x) style rotation points it right.
    unit = [(-0.15, 0.6), (0.15, 0.6), (0.15, -0.1), (0.4, -0.1), (0.0, -0.6), (-0.4, -0.1), (-0.15, -0.1)]
    points = [(-y, x) if right else (x, y) for x, y in unit]
    draw.polygon([(cx + radius * x, cy + radius * y) for x, y in points], fill=fill)


def _sign_layer(kind: str, side: int, rng: np.random.Generator) -> Image.Image:
    """The sign alone on a transparent square layer of ``side`` px."""
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    red = _jitter_colour((200, 25, 35), rng)
    white = _jitter_colour((235, 235, 230), rng, 15)
    blue = _jitter_colour((25, 70, 170), rng)
    yellow = _jitter_colour((235, 190, 30), rng)
    black = _jitter_colour((25, 25, 25), rng, 15)
    cx = side / 2 + rng.uniform(-0.07, 0.07) * side
    cy = side / 2 + rng.uniform(-0.07, 0.07) * side
    r = side * rng.uniform(0.28, 0.4)
    bold = "DejaVuSans-Bold.ttf"
    if kind == "stop":
        _shape(draw, "octagon", cx, cy, r, white)
        _shape(draw, "octagon", cx, cy, r * 0.9, red)
        draw.text((cx, cy), "STOP", fill=white, font=_font(bold, max(1, int(r * 0.55))), anchor="mm")
    elif kind == "no_entry":
        _shape(draw, "circle", cx, cy, r, red)
        draw.rectangle((cx - 0.65 * r, cy - 0.15 * r, cx + 0.65 * r, cy + 0.15 * r), fill=white)
    elif kind in ("speed_30", "speed_60"):
        _shape(draw, "circle", cx, cy, r, red)
        _shape(draw, "circle", cx, cy, r * 0.78, white)
        draw.text((cx, cy), kind[-2:], fill=black, font=_font(bold, max(1, int(r * 0.9))), anchor="mm")
    elif kind in ("warning", "yield"):
        direction = "up" if kind == "warning" else "down"
        inner_cy = cy + (0.08 if kind == "warning" else -0.08) * r
        _shape(draw, direction, cx, cy, r, red)
        _shape(draw, direction, cx, inner_cy, r * 0.62, white)
        if kind == "warning":
            draw.text(
                (cx, cy + 0.12 * r), "!", fill=black, font=_font(bold, max(1, int(r * 0.7))), anchor="mm"
            )
    elif kind == "priority":
        _shape(draw, "diamond", cx, cy, r, black)
        _shape(draw, "diamond", cx, cy, r * 0.93, white)
        _shape(draw, "diamond", cx, cy, r * 0.7, yellow)
    elif kind in ("ahead", "turn_right"):
        _shape(draw, "circle", cx, cy, r, blue)
        _arrow(draw, cx, cy, r, kind == "turn_right", white)
    elif kind == "end_limits":
        _shape(draw, "circle", cx, cy, r, black)
        _shape(draw, "circle", cx, cy, r * 0.94, white)
        for shift in (-0.22, 0.0, 0.22):
            offset = shift * r
            draw.line(
                (
                    cx + 0.55 * r + offset,
                    cy - 0.55 * r + offset,
                    cx - 0.55 * r + offset,
                    cy + 0.55 * r + offset,
                ),
                fill=black,
                width=max(1, int(0.07 * r)),
            )
    else:
        raise KeyError(f"unknown sign {kind!r}; allowed values: {', '.join(SIGN_CLASSES)}")
    return layer.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR)


def _background(side: int, rng: np.random.Generator) -> Image.Image:
    """A vertical two-colour gradient (sky, foliage, wall, road ...) with random clutter shapes."""
    top, bottom = rng.integers(20, 235, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, side)[:, None, None]
    array = (top[None, None, :] * (1 - ramp) + bottom[None, None, :] * ramp) * np.ones((1, side, 1))
    canvas = Image.fromarray(array.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 10))):
        colour = tuple(int(c) for c in rng.integers(20, 235, size=3))
        x0, y0 = rng.uniform(-0.2, 1.0, size=2) * side
        w, h = rng.uniform(0.05, 0.6, size=2) * side
        box = (x0, y0, x0 + w, y0 + h)
        kind = int(rng.integers(3))
        if kind == 0:
            draw.rectangle(box, fill=colour)
        elif kind == 1:
            draw.ellipse(box, fill=colour)
        else:
            draw.line(box, fill=colour, width=int(rng.integers(1, 3 * _SUPERSAMPLE)))
    return canvas


def _sign(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    side = size * _SUPERSAMPLE
    canvas = _background(side, rng).convert("RGBA")
    canvas.alpha_composite(_sign_layer(kind, side, rng))
    small = np.asarray(canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32)
    light = rng.uniform(0.5, 1.15) * rng.uniform(0.9, 1.1, size=3)  # exposure and colour cast
    noisy = small * light + rng.normal(0.0, 4.0, small.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8), "RGB")


def build_signs(size: int, rng: np.random.Generator) -> RawDomain:
    """10 classes, 120 renderings each."""
    images, labels = [], []
    for label, kind in enumerate(SIGN_CLASSES):
        for _ in range(_SIGNS_PER_CLASS):
            images.append(pil_to_tensor(_sign(kind, size, rng)))
            labels.append(label)
    splits = split_by_index(torch.stack(images), np.array(labels), rng)
    return RawDomain(**splits, class_names=SIGN_CLASSES)
