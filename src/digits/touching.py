"""Digits as the number reader cuts them out of touching neighbours: training images for the model.

Where two digits of a number touch, ``digits.segmentation`` cuts the mark along the path that crosses
the least ink, and each piece keeps a stub of its neighbour's stroke. A model that has only seen whole
digits misreads or doubts such pieces far more often than the same digits alone (plan R15 in
docs/experiments.md), so ``cut_pieces`` makes them from *training* digits, labelled with their digit.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from digits.images import ImageError
from digits.segmentation import segment_number

#: How far (a fraction of the mark's width) a cut may lie outside the columns where the two digits
#: overlap and still count as the right cut.
_RIGHT_CUT = 0.08


def _inked_columns(digit: np.ndarray) -> np.ndarray:
    columns = np.flatnonzero(digit.max(axis=0) > 0.1)
    return digit[:, columns[0] : columns[-1] + 1]


def touching_pair(left: np.ndarray, right: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    """Two digits (28x28 floats in [0, 1]) written side by side, touching or overlapping by up to 2
    pixels at MNIST's scale, each a little up or down, as ``realworld.numbers`` writes touching
    neighbours; printed dark on paper, 2-4 times larger. Returns the grey image and, as fractions of
    the pair's inked width, where the right digit starts and where the left one ends."""
    crops = [_inked_columns(left), _inked_columns(right)]
    width = crops[0].shape[1] + crops[1].shape[1]
    row = np.zeros((40, width + 20), dtype=np.float32)
    starts = [10, 10 + crops[0].shape[1] + int(rng.integers(-2, 1))]
    for start, crop in zip(starts, crops, strict=True):
        top = 6 + int(rng.integers(-2, 3))
        region = row[top : top + 28, start : start + crop.shape[1]]
        np.maximum(region, crop, out=region)
    end = max(starts[1] + crops[1].shape[1], starts[0] + crops[0].shape[1])
    scale = rng.uniform(2, 4)
    size = (int(row.shape[1] * scale), int(row.shape[0] * scale))
    big = np.asarray(Image.fromarray((row * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR))
    gray = 245.0 - 0.8 * big + rng.normal(0, 3, big.shape)
    span = end - starts[0]
    join = ((starts[1] - starts[0]) / span, (starts[0] + crops[0].shape[1] - starts[0]) / span)
    return np.clip(gray, 0, 255).astype(np.uint8), join


def right_cut(gray: np.ndarray, join: tuple[float, float]) -> list[np.ndarray] | None:
    """The two model inputs the number reader makes of a touching pair cut in the right place, or
    None when the pair is not one mark or no cut offered lies where the digits meet."""
    try:
        marks = segment_number(gray)
    except ImageError:
        return None
    if len(marks) != 1:
        return None
    x, _, width, _ = marks[0].readings[0][0].box
    low, high = join[0] - _RIGHT_CUT, join[1] + _RIGHT_CUT
    for crops in marks[0].readings[1:]:
        if len(crops) != 2:
            continue
        left_box, right_box = crops[0].box, crops[1].box
        ends = ((left_box[0] + left_box[2] - x) / width, (right_box[0] - x) / width)
        if all(low <= end <= high for end in ends):
            return [crop.image for crop in crops]
    return None


def cut_pieces(count: int, digits: np.ndarray, labels: np.ndarray, seed: int, log=print):
    """``count`` model inputs (count, 28, 28, 1) cut from touching pairs of ``digits`` (training
    digits, floats (N, 28, 28[, 1]) in [0, 1]) as the number reader cuts them, and their labels."""
    rng = np.random.default_rng([seed, 1998])
    digits = digits.reshape(len(digits), 28, 28)
    images, out_labels, tried = [], [], 0
    while len(images) < count:
        if tried > 10 * count + 100:  # digits that never touch as one mark, or never cut right
            raise ValueError(f"only {len(images)} of {count} pieces cut from {tried} touching pairs")
        i, j = rng.choice(len(digits), 2, replace=False)
        tried += 1
        pieces = right_cut(*touching_pair(digits[i], digits[j], rng))
        if pieces is None:
            continue
        images += pieces
        out_labels += [labels[i], labels[j]]
        if len(images) % 2000 < 2:
            log(f"  {len(images):,} of {count:,} pieces cut ({tried:,} pairs written)")
    return np.stack(images[:count])[..., np.newaxis].astype(np.float32), np.asarray(out_labels[:count])
