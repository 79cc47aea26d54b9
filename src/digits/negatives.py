"""Non-digit images for training the reader to say "not a digit" (outlier exposure).

Hendrycks, Mazeika and Dietterich (2019), "Deep Anomaly Detection with Outlier Exposure": a classifier
trained to give *uniform* probabilities to examples of what it should not recognise learns a
confidence that separates its classes from the unseen. The negatives here are:

* Fashion-MNIST *training* items (Debian's ``dataset-fashion-mnist``); its test items only measure;
* letters drawn from stroke skeletons (the real-world benchmark's letters are printed from fonts);
* random pen paths and outline shapes (the benchmark's scribbles are spirals, zigzags and wanders).

Every image goes through ``preprocess.normalise``, so the model learns from what it would see when
a user sends such a picture.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from digits import DigitsError
from digits.data import FASHION_DIR, load_fashion
from digits.images import ImageError
from digits.preprocess import normalise
from digits.strokes import smooth_curve

# The letters of ``realworld.LETTERS`` (those shaped like no digit) as strokes of points in a unit box
# (x right, y down); a key's first character is its letter, so "a2" is a printed, two-storey a.
_LETTERS = {
    "A": [[(0.05, 1), (0.5, 0), (0.95, 1)], [(0.25, 0.6), (0.75, 0.6)]],
    "C": [[(0.9, 0.2), (0.6, 0), (0.25, 0.1), (0.1, 0.5), (0.25, 0.9), (0.6, 1), (0.9, 0.8)]],
    "E": [[(0.9, 0), (0.1, 0), (0.1, 1), (0.9, 1)], [(0.1, 0.5), (0.7, 0.5)]],
    "F": [[(0.9, 0), (0.1, 0), (0.1, 1)], [(0.1, 0.5), (0.7, 0.5)]],
    "H": [[(0.1, 0), (0.1, 1)], [(0.9, 0), (0.9, 1)], [(0.1, 0.5), (0.9, 0.5)]],
    "K": [[(0.1, 0), (0.1, 1)], [(0.9, 0), (0.1, 0.55), (0.9, 1)]],
    "L": [[(0.15, 0), (0.15, 1), (0.85, 1)]],
    "M": [[(0.05, 1), (0.1, 0), (0.5, 0.6), (0.9, 0), (0.95, 1)]],
    "N": [[(0.1, 1), (0.1, 0), (0.9, 1), (0.9, 0)]],
    "P": [[(0.1, 1), (0.1, 0), (0.7, 0), (0.9, 0.2), (0.7, 0.45), (0.1, 0.45)]],
    "R": [[(0.1, 1), (0.1, 0), (0.7, 0), (0.9, 0.2), (0.7, 0.45), (0.1, 0.45), (0.9, 1)]],
    "U": [[(0.1, 0), (0.1, 0.8), (0.3, 1), (0.7, 1), (0.9, 0.8), (0.9, 0)]],
    "V": [[(0.05, 0), (0.5, 1), (0.95, 0)]],
    "W": [[(0.0, 0), (0.25, 1), (0.5, 0.3), (0.75, 1), (1.0, 0)]],
    "X": [[(0.1, 0), (0.9, 1)], [(0.9, 0), (0.1, 1)]],
    "Y": [[(0.1, 0), (0.5, 0.5), (0.9, 0)], [(0.5, 0.5), (0.5, 1)]],
    "a": [
        [(0.85, 0.35), (0.5, 0.25), (0.15, 0.5), (0.2, 0.95), (0.6, 0.9), (0.85, 0.55)],
        [(0.85, 0.3), (0.9, 1)],
    ],
    "a2": [
        [(0.2, 0.35), (0.5, 0.25), (0.8, 0.4), (0.8, 1)],
        [(0.8, 0.6), (0.4, 0.6), (0.15, 0.8), (0.35, 1), (0.8, 0.85)],
    ],
    "c": [[(0.85, 0.4), (0.5, 0.3), (0.15, 0.55), (0.2, 0.9), (0.5, 1), (0.85, 0.9)]],
    "d": [[(0.8, 0.5), (0.45, 0.4), (0.15, 0.65), (0.3, 1), (0.75, 0.9)], [(0.85, 0), (0.85, 1)]],
    "p": [[(0.15, 0.3), (0.15, 1.1)], [(0.15, 0.4), (0.5, 0.25), (0.85, 0.45), (0.6, 0.75), (0.15, 0.7)]],
    "y": [[(0.1, 0.3), (0.5, 0.75)], [(0.9, 0.3), (0.3, 1.1)]],
    "e": [
        [(0.1, 0.55), (0.9, 0.55), (0.8, 0.2), (0.5, 0.05), (0.15, 0.25), (0.15, 0.8), (0.5, 1), (0.9, 0.85)]
    ],
    "f": [[(0.85, 0.1), (0.6, 0), (0.4, 0.15), (0.4, 1)], [(0.1, 0.35), (0.75, 0.35)]],
    "h": [[(0.1, 0), (0.1, 1)], [(0.1, 0.6), (0.4, 0.4), (0.8, 0.45), (0.85, 1)]],
    "k": [[(0.15, 0), (0.15, 1)], [(0.8, 0.35), (0.15, 0.7), (0.85, 1)]],
    "m": [
        [(0.05, 1), (0.05, 0.3), (0.3, 0.25), (0.5, 0.4), (0.5, 1)],
        [(0.5, 0.4), (0.75, 0.25), (0.95, 0.4), (0.95, 1)],
    ],
    "n": [[(0.1, 1), (0.1, 0.3), (0.5, 0.25), (0.85, 0.4), (0.85, 1)]],
    "r": [[(0.2, 1), (0.2, 0.3)], [(0.2, 0.55), (0.5, 0.3), (0.85, 0.3)]],
    "u": [[(0.1, 0.3), (0.15, 0.9), (0.5, 1), (0.85, 0.85)], [(0.85, 0.3), (0.88, 1)]],
    "v": [[(0.1, 0.3), (0.5, 1), (0.9, 0.3)]],
    "w": [[(0.0, 0.3), (0.25, 1), (0.5, 0.5), (0.75, 1), (1.0, 0.3)]],
    "x": [[(0.1, 0.3), (0.9, 1)], [(0.9, 0.3), (0.1, 1)]],
}


def _canvas(rng: np.random.Generator) -> tuple[Image.Image, ImageDraw.ImageDraw, int, int]:
    side = int(rng.integers(96, 224))
    image = Image.new("L", (side, side), 255)
    width = int(rng.integers(2, max(3, side // 12)))
    return image, ImageDraw.Draw(image), side, width


def drawn_letter(rng: np.random.Generator) -> Image.Image:
    """A letter from its stroke skeleton, jittered, slanted and squeezed, dark on white."""
    image, pen, side, width = _canvas(rng)
    strokes = _LETTERS[list(_LETTERS)[int(rng.integers(len(_LETTERS)))]]
    slant, aspect = rng.uniform(-0.3, 0.3), rng.uniform(0.5, 1.1)
    box = side * rng.uniform(0.5, 0.8)
    for stroke in strokes:
        points = np.asarray(stroke) + rng.normal(0, 0.04, (len(stroke), 2))
        x = side / 2 + (points[:, 0] - 0.5) * box * aspect + slant * (0.5 - points[:, 1]) * box
        y = side / 2 + (points[:, 1] - 0.5) * box
        pen.line(list(zip(x, y, strict=True)), fill=0, width=width, joint="curve")
    return image


def random_marks(rng: np.random.Generator) -> Image.Image:
    """Pen paths through random points (straight or curved), or star-shaped outlines, dark on white."""
    image, pen, side, width = _canvas(rng)
    kind = rng.integers(3)
    if kind < 2:
        for _ in range(int(rng.integers(1, 4))):
            # Five or more points: fewer can trace a 1, a 7 or an L.
            points = rng.uniform(0.15, 0.85, (int(rng.integers(5, 10)), 2)) * side
            if kind == 1:
                points = smooth_curve(points)
            pen.line([tuple(p) for p in points], fill=0, width=width, joint="curve")
    else:
        # Stars and jagged outlines: a smooth closed outline would be a 0.
        corners = 2 * int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
        radius = side * rng.uniform(0.25, 0.4) * np.where(np.arange(corners) % 2, rng.uniform(0.3, 0.6), 1.0)
        points = np.stack([side / 2 + radius * np.cos(angles), side / 2 + radius * np.sin(angles)], axis=1)
        pen.polygon([tuple(p) for p in points], outline=0, width=width)
    return image


def training_negatives(count: int, seed: int) -> np.ndarray:
    """``count`` non-digit model inputs, float32 (count, 28, 28, 1): half Fashion-MNIST training items,
    a quarter drawn letters, a quarter random marks."""
    rng = np.random.default_rng([seed, 1979])
    fashion = load_fashion("train")
    if fashion is None:
        raise DigitsError(
            f"Fashion-MNIST not found in {FASHION_DIR}: training with negatives needs it (apt-get install"
            " dataset-fashion-mnist, or point $FASHION_MNIST_DIR at its .gz files)"
        )
    images = []
    for i in _fashion_draw(rng, len(fashion), count):
        images.append(fashion[i])
    while len(images) < count:
        images.append(np.asarray(drawn_letter(rng) if len(images) % 2 else random_marks(rng)))
    out = []
    for image in images:
        try:
            out.append(normalise(image))
        except ImageError:  # an item too faint to find: nothing a user would send either
            continue
    return np.stack(out)[..., np.newaxis].astype(np.float32)


#: Held out from the generated negatives to report how many the calibrated model turns away.
HELD_OUT_NEGATIVES = 1000


def _fashion_draw(rng: np.random.Generator, items: int, count: int) -> np.ndarray:
    return rng.choice(items, count // 2, replace=False)


def fashion_items_drawn(count: int, seed: int, items: int) -> np.ndarray:
    """The indices of the Fashion-MNIST training items (of ``items``) that ``with_negatives(count,
    seed, ...)`` draws, held-out ones included: the others are non-digits a model trained with
    ``--negatives count --seed seed`` has never seen."""
    return _fashion_draw(np.random.default_rng([seed, 1979]), items, count + HELD_OUT_NEGATIVES)


def with_negatives(count: int, seed: int, x: np.ndarray, targets: np.ndarray, log=print):
    """The training images and one-hot targets with ``count`` non-digits added (uniform targets), and
    the held-out negatives that calibration scores (None when ``count`` is 0)."""
    if not count:
        return x, targets, None
    log(f"generating {count + HELD_OUT_NEGATIVES:,} non-digit images (outlier exposure)")
    negatives = training_negatives(count + HELD_OUT_NEGATIVES, seed)
    used, held_out = negatives[:count], negatives[count:]
    uniform = np.full((len(used), targets.shape[1]), 1.0 / targets.shape[1], dtype=np.float32)
    return np.concatenate([x, used]), np.concatenate([targets, uniform]), held_out
