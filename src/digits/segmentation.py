"""Reading a written number: its marks grouped into digits, left to right, with the ways to cut a mark
that may be touching neighbours (the model chooses among them: digits.number_reader)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from digits.images import ImageError
from digits.preprocess import COARSE_SIDE_NUMBER, Ink, cut, find_ink, to_mnist, union

#: A multi-digit image with more separate marks than this is noise, not a number.
MAX_DIGITS = 20
# A mark wider than _WIDE times its height may be touching digits, at most one per _NARROWEST
# heights of its width and _MOST_SPLIT in all; a mark under _FRAGMENT of the tallest's height is part
# of its neighbour.
_WIDE = 0.75
_NARROWEST = 0.45
_MOST_SPLIT = 6
_TWO_DIGIT_CUTS = 4
_FRAGMENT = 0.45


@dataclass(frozen=True)
class DigitCrop:
    """One digit of a number: its model input and its box ``(x, y, width, height)`` in the input's pixels."""

    image: np.ndarray
    box: tuple[int, int, int, int]


def segment_number(gray: np.ndarray) -> list[list[list[DigitCrop]]]:
    """The marks of a written number, left to right, each with its possible readings.

    Each connected mark is a digit, except that marks stacked in the same column (a detached stroke,
    the top bar of a 5) are one digit, and so is a short fragment beside a digit. A mark wider than
    a digit may be neighbours that touch: its readings are the mark whole and cut into 2, 3, ...
    digits where the ink is thinnest; the model chooses (``digits.number_reader``). Each reading is
    a list of ``DigitCrop``s, normalised like ``normalise``.
    """
    ink = find_ink(gray, COARSE_SIDE_NUMBER)
    groups = _group_marks(ink)
    if len(groups) > MAX_DIGITS:
        raise ImageError(
            f"found {len(groups)} separate marks; at most {MAX_DIGITS} digits can be read", "too_many_digits"
        )
    marks = []
    for group in groups:
        own = [ink.marks[j] for j in group]
        box = union([ink.slices[j] for j in group])
        readings = []
        for parts in _splits(ink, own, box):
            crops = []
            for n, part in enumerate(parts):
                strength, (rows, cols) = cut(ink, own, part, (int(n == 0), int(n == len(parts) - 1)))
                box_xywh = (cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
                crops.append(DigitCrop(to_mnist(strength), box_xywh))
            readings.append(crops)
        marks.append(readings)
    return marks


def segment_digits(gray: np.ndarray) -> list[DigitCrop]:
    """The digits of a multi-digit number, left to right, each mark read whole (see ``segment_number``)."""
    return [readings[0][0] for readings in segment_number(gray)]


def _group_marks(ink: Ink) -> list[list[int]]:
    """Marks grouped into digits, left to right: marks sharing columns go together, and so does a
    short fragment (under _FRAGMENT of the tallest mark's height) with its nearest neighbour."""
    order = sorted(range(len(ink.marks)), key=lambda i: ink.slices[i][1].start)
    groups: list[list[int]] = []
    for i in order:
        cols = ink.slices[i][1]
        if groups:
            last = union([ink.slices[j] for j in groups[-1]])[1]
            overlap = min(cols.stop, last.stop) - max(cols.start, last.start)
            if overlap >= 0.5 * min(cols.stop - cols.start, last.stop - last.start):
                groups[-1].append(i)
                continue
        groups.append([i])

    def height(group: list[int]) -> int:
        rows = union([ink.slices[j] for j in group])[0]
        return rows.stop - rows.start

    tallest = max(height(g) for g in groups)
    n = 0
    while len(groups) > 1 and n < len(groups):
        if height(groups[n]) >= _FRAGMENT * tallest:
            n += 1
            continue
        gaps = {k: _gap(ink, groups[n], groups[k]) for k in (n - 1, n + 1) if 0 <= k < len(groups)}
        nearest = min(gaps, key=gaps.get)
        if gaps[nearest] > 0.5 * tallest:  # on its own: a stray mark, read (or refused) alone
            n += 1
            continue
        groups[nearest].extend(groups.pop(n))
        n = min(n, nearest)
    return groups


def _gap(ink: Ink, group: list[int], other: list[int]) -> int:
    """Columns between two groups of marks (negative where they overlap)."""
    ours = union([ink.slices[j] for j in group])[1]
    theirs = union([ink.slices[j] for j in other])[1]
    return max(theirs.start - ours.stop, ours.start - theirs.stop)


def _splits(ink: Ink, marks: list[int], box: tuple[slice, slice]) -> list[list[tuple[slice, slice]]]:
    """The ways to read one mark: whole, and, if it is wider than a digit, cut into 2, 3, ... digits.

    Handwritten digits are rarely much wider than tall; a mark over ``_WIDE`` times as wide as high
    may hold touching neighbours, at most one per ``_NARROWEST`` heights of width. In two, it is cut
    at each of the thinnest places; in more, at the column with the least ink near each evenly
    spaced place.
    """
    rows, cols = box
    height, width = rows.stop - rows.start, cols.stop - cols.start
    readings = [[box]]
    if width <= _WIDE * height:
        return readings

    def parts(cuts: list[int]) -> list[tuple[slice, slice]]:
        return [(rows, slice(cols.start + a, cols.start + b)) for a, b in zip(cuts, cuts[1:], strict=False)]

    column_ink = np.isin(ink.labels[box], marks).sum(axis=0).astype(np.float64)
    # Two digits: cut at each of the thinnest places (local minima of the ink per column), since one
    # of the two may be a narrow 1 and the other a wide 0.
    smooth = ndimage.uniform_filter1d(column_ink, 3)
    inner = np.arange(max(1, int(0.15 * width)), min(width - 1, int(0.85 * width)))
    minima = [c for c in inner if smooth[c] <= smooth[c - 1] and smooth[c] <= smooth[c + 1]]
    for thinnest in sorted(minima, key=lambda c: smooth[c])[:_TWO_DIGIT_CUTS]:
        readings.append(parts([0, int(thinnest), width]))
    most = min(int(np.ceil(width / (_NARROWEST * height))), _MOST_SPLIT)
    for count in range(3, most + 1):
        cuts = [0]
        for k in range(1, count):
            middle, reach = k * width / count, width / (3 * count)
            low, high = max(int(middle - reach), cuts[-1] + 1), min(int(middle + reach) + 1, width - 1)
            if low < high:
                cuts.append(low + int(np.argmin(column_ink[low:high])))
        cuts.append(width)
        if len(cuts) == count + 1:
            readings.append(parts(cuts))
    return readings
