"""Reading a written number: its marks grouped into digits, left to right, with the ways to cut a mark
that may be touching neighbours (the model chooses among them: digits.number_reader)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from digits.images import WORK_SIDE, ImageError, NoDigitError, reduction_factor
from digits.preprocess import COARSE_SIDE_NUMBER, Ink, cut, find_ink, to_mnist, union

#: A multi-digit image with more separate marks than this is noise, not a number.
MAX_DIGITS = 20
# A mark wider than _WIDE times its height may be touching digits, at most one per _NARROWEST
# heights of its width and _MOST_SPLIT in all; a narrower one, down to _NARROWEST, may be a 1 touching
# its neighbour. A mark under _FRAGMENT of the tallest's height is part of its neighbour.
_WIDE = 0.75
_NARROWEST = 0.45
_MOST_SPLIT = 6
_TWO_DIGIT_CUTS = 4
_FRAGMENT = 0.45
# A cut between touching digits strays at most _SEAM_REACH of the mark's height from the thinnest
# column; each column strayed and each sideways step cost these fractions of an inked pixel.
_SEAM_REACH = 0.2
_SEAM_STRAY = 0.01
_SEAM_STEP = 0.05
# A number whose tallest mark is under this many pixels high on the reduced copy is looked for again
# on the image at its working size: at that height the one-pixel bridge that joins a stroke's pieces
# (``find_ink``) also joins neighbours a tenth of their height apart, as MNIST's closest are, and a
# pen's stroke is a pixel wide or less, faded by the reduction.
_SMALL_NUMBER = 24


@dataclass(frozen=True)
class DigitCrop:
    """One digit of a number: its model input and its box ``(x, y, width, height)`` in the input's pixels."""

    image: np.ndarray
    box: tuple[int, int, int, int]
    # Its ink strength (``preprocess.cut``), for the pair model to read a piece of three touching
    # digits as two of them (``number_reader.pair_probabilities``).
    strength: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Mark:
    """One mark of a number and the ways to read it: whole first, then cut into 2, 3, ... digits."""

    readings: list[list[DigitCrop]]
    # Narrower than a digit beside a digit, but perhaps a 1 touching its neighbour: cut only if the
    # mark whole is not a digit, so that a digit the model reads is never cut in two, and another
    # mark is, so that a letter's halves are not read as a number.
    narrow: bool = False
    # The mark whole's ink strength (``preprocess.cut``), for a second look, thinned, if the model
    # refuses it whole (``number_reader.look_again``): thinned only then, as thinning is slow.
    strength: np.ndarray | None = None


def segment_number(gray: np.ndarray) -> list[Mark]:
    """The marks of a written number, left to right, each with its possible readings.

    Each connected mark is a digit, except that marks stacked in the same column (a detached stroke,
    the top bar of a 5) are one digit, and so is a short fragment beside a digit. A mark wider than
    a digit may be neighbours that touch: its readings are the mark whole and cut into 2, 3, ...
    digits where the ink is thinnest; the model chooses (``digits.number_reader``). Each reading is
    a list of ``DigitCrop``s, normalised like ``normalise``.
    """
    ink = _number_ink(gray)
    groups = _group_marks(ink)
    if len(groups) > MAX_DIGITS:
        raise ImageError(
            f"found {len(groups)} separate marks; at most {MAX_DIGITS} digits can be read", "too_many_digits"
        )
    marks = []
    for group in groups:
        own = [ink.marks[j] for j in group]
        box = union([ink.slices[j] for j in group])
        # The mark whole first; NoDigitError if it has no ink strong enough to read.
        strength, whole = _crop(ink, own, box, None, 0, 1)
        readings = [[whole]]
        for parts in _splits(ink, own, box)[1:]:
            try:
                crops = [
                    _crop(ink, own, part, within, n, len(parts))[1] for n, (part, within) in enumerate(parts)
                ]
            except NoDigitError:
                continue  # a cut that passed beside the ink and left a part empty: no reading
            readings.append(crops)
        rows, cols = box
        narrow = cols.stop - cols.start <= _WIDE * (rows.stop - rows.start)
        marks.append(Mark(readings, narrow, strength))
    return marks


def _number_ink(gray: np.ndarray) -> Ink:
    """The ink of a number, found on a copy reduced to ``COARSE_SIDE_NUMBER``; where its marks are all
    under ``_SMALL_NUMBER`` pixels high (a number written small on a big page, photographed from
    afar), found again on one reduced no further than ``WORK_SIDE``."""
    ink = find_ink(gray, COARSE_SIDE_NUMBER)
    tallest = max(rows.stop - rows.start for rows, _ in ink.slices)
    if tallest >= _SMALL_NUMBER or reduction_factor(gray.shape, WORK_SIDE) == ink.factor:
        return ink
    try:
        return find_ink(gray, WORK_SIDE)
    except NoDigitError:
        return ink  # a finer copy's threshold may see only paper noise where the coarse one saw ink


def _crop(
    ink: Ink, own: list[int], part: tuple[slice, slice], within, n: int, count: int
) -> tuple[np.ndarray, DigitCrop]:
    """The ``n``-th of ``count`` parts of a mark: its ink strength, and as a model input with its box."""
    strength, (rows, cols) = cut(ink, own, part, (int(n == 0), int(n == count - 1)), within)
    box = (cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
    return strength, DigitCrop(to_mnist(strength), box, strength)


def segment_digits(gray: np.ndarray) -> list[DigitCrop]:
    """The digits of a multi-digit number, left to right, each mark read whole (see ``segment_number``)."""
    return [mark.readings[0][0] for mark in segment_number(gray)]


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


#: A part of a mark: its box, and the mask of the pixels it may take (None: all of the box's).
Part = tuple[tuple[slice, slice], np.ndarray | None]


def _splits(ink: Ink, marks: list[int], box: tuple[slice, slice]) -> list[list[Part]]:
    """The ways to read one mark: whole, and, if it may hold touching digits, cut into 2, 3, ... digits.

    Handwritten digits are rarely much wider than tall; a mark over ``_WIDE`` times as wide as high
    may hold touching neighbours, at most one per ``_NARROWEST`` heights of width, and so may a
    narrower one down to ``_NARROWEST`` (a 1 and its neighbour; see ``Mark.narrow``). In two, it is cut
    near each of the thinnest columns; in more, near the column with the least ink around each evenly
    spaced place. Each cut follows the path from top to bottom that crosses the least ink
    (``_seams``), so a digit leaning into its neighbour keeps its own strokes.
    """
    rows, cols = box
    height, width = rows.stop - rows.start, cols.stop - cols.start
    readings: list[list[Part]] = [[(box, None)]]
    if width < _NARROWEST * height:
        return readings
    mark_ink = np.isin(ink.labels[box], marks)

    def parts(seams: list[np.ndarray]) -> list[Part]:
        edges = [np.zeros(height, dtype=int), *seams, np.full(height, width)]
        span = np.arange(width)
        out = []
        for left, right in zip(edges, edges[1:], strict=False):
            within = np.zeros(ink.labels.shape, dtype=bool)
            inside = (span >= left[:, None]) & (span < right[:, None])
            # The rows of cut's margin, above and below the box, follow the box's first and last rows.
            top, bottom = max(rows.start - 1, 0), min(rows.stop + 1, ink.labels.shape[0])
            inside = np.concatenate(
                [inside[:1].repeat(rows.start - top, 0), inside, inside[-1:].repeat(bottom - rows.stop, 0)]
            )
            within[top:bottom, cols] = inside
            # The outer margins stay the digit's own: cut's margin there keeps the strokes' edges.
            if not left.any():
                within[top:bottom, : cols.start] = True
            if (right == width).all():
                within[top:bottom, cols.stop :] = True
            part_cols = slice(cols.start + int(left.min()), cols.start + int(right.max()))
            out.append(((rows, part_cols), within))
        return out

    column_ink = mark_ink.sum(axis=0).astype(np.float64)
    # Two digits: cut at each of the thinnest places (local minima of the ink per column), since one
    # of the two may be a narrow 1 and the other a wide 0.
    smooth = ndimage.uniform_filter1d(column_ink, 3)
    inner = np.arange(max(1, int(0.15 * width)), min(width - 1, int(0.85 * width)))
    minima = [c for c in inner if smooth[c] <= smooth[c - 1] and smooth[c] <= smooth[c + 1]]
    # The thinnest columns are often inside a digit (the middle of a 0), so seams also start at
    # evenly spaced columns: one of them lies near the join, wherever it is.
    starts = sorted(minima, key=lambda c: smooth[c])[:_TWO_DIGIT_CUTS]
    starts += [int(width * share) for share in np.arange(0.2, 0.81, 0.1)]
    reach = max(1, int(_SEAM_REACH * height))
    seams = {tuple(seam) for seam in _seams(mark_ink, starts, reach)}
    for seam in sorted(seams, key=lambda path: path[0]):
        readings.append(parts([np.asarray(seam)]))
    most = min(int(np.ceil(width / (_NARROWEST * height))), _MOST_SPLIT)
    for count in range(3, most + 1):
        cuts = [0]
        for k in range(1, count):
            middle, spread = k * width / count, width / (3 * count)
            low, high = max(int(middle - spread), cuts[-1] + 1), min(int(middle + spread) + 1, width - 1)
            if low < high:
                cuts.append(low + int(np.argmin(column_ink[low:high])))
        if len(cuts) == count:
            # Seams no further apart than a third of a digit's share, so that they never cross.
            near = max(1, min(reach, int(width / (3 * count))))
            readings.append(parts(list(_seams(mark_ink, cuts[1:], near))))
    return readings


def _seams(ink: np.ndarray, starts: list[int], reach: int) -> np.ndarray:
    """For each start column, per row of a mark's box, the column where a path from top to bottom
    crosses it: the path that crosses the fewest inked pixels, within ``reach`` columns of its start,
    moving at most one column a row (dynamic programming, as in seam carving, for all starts at once).
    Where no ink is in the way it runs straight down its start. Shape (len(starts), rows)."""
    height, width = ink.shape
    starts = np.asarray(starts, dtype=np.int64)
    columns = np.arange(width)
    low, high = np.maximum(1, starts - reach), np.minimum(width - 1, starts + reach + 1)
    allowed = (columns >= low[:, None]) & (columns < high[:, None])
    # Ink costs 1 a pixel; straying from the start and stepping sideways cost a little, so that of
    # paths crossing the same ink the straightest wins. Columns out of reach cannot be crossed.
    stray = _SEAM_STRAY * np.abs(columns - starts[:, None])
    cost = np.where(allowed[:, None, :], ink[None].astype(np.float64) + stray[:, None, :], np.inf)
    total = cost[:, 0]
    came_from = np.zeros((len(starts), height, width), dtype=np.int8)
    left, right = np.full_like(total, np.inf), np.full_like(total, np.inf)
    for r in range(1, height):
        left[:, 1:], right[:, :-1] = total[:, :-1] + _SEAM_STEP, total[:, 1:] + _SEAM_STEP
        # The cheapest of the three cells above, the left one first on a tie, then the middle one.
        middle_or_right = np.minimum(total, right)
        from_left = left <= middle_or_right
        came_from[:, r] = np.where(from_left, -1, np.where(total <= right, 0, 1))
        total = np.where(from_left, left, middle_or_right) + cost[:, r]
    paths = np.empty((len(starts), height), dtype=np.int64)
    paths[:, -1] = np.argmin(total, axis=1)
    every = np.arange(len(starts))
    for r in range(height - 1, 0, -1):
        paths[:, r - 1] = paths[:, r] + came_from[every, r, paths[:, r]]
    # A mark too narrow for any reach: straight down.
    return np.where((low < high)[:, None], paths, starts[:, None])
