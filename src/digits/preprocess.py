"""Turning real-world images into model inputs the way MNIST was made.

MNIST digits are light ink on black, their longer side scaled to 20 pixels (aspect ratio kept,
anti-aliased) and placed in a 28x28 field so that the centre of mass sits at the centre. Photos,
scans and canvas drawings are the opposite: dark ink on light paper, any size, anywhere in the frame.
This module bridges the two, with numpy and scipy.ndimage (one module: its steps share the ``Ink``
record and their constants, so they stay together): ``normalise`` turns grayscale pixels
(decoded by digits.images) into float32 (28, 28) in [0, 1], white digit on black, or raises
``NoDigitError``; ``load_image`` does it for a file. digits.segmentation does it for each digit of a
written number, with the helpers shared here (``find_ink``, ``cut``, ``to_mnist``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from digits.images import (
    FILE_MAX_PIXELS,
    DecodedImage,
    ImageError,
    NoDigitError,
    decode_image,
    reduction_factor,
)

# How far ink and paper must differ (on a 0-1 scale) for the image to hold anything at all.
_MIN_CONTRAST = 0.15
# Marks smaller than this fraction of the largest mark are specks of dust or noise, unless they lie
# among the bigger marks and are at least _MIN_PIECE_FRACTION of the largest: pieces of a stroke.
_MIN_MARK_FRACTION = 0.08
_MIN_PIECE_FRACTION = 0.03
# Mean stroke width of MNIST digits, in pixels of the 20-pixel box; strokes under _THIN times it
# are thickened to it.
_MNIST_STROKE = 2.3
_THIN = 0.7
# Strokes over _THICK times it are thinned to _THICK_TARGET times it for a second look (``thinned``).
_THICK = 1.3
_THICK_TARGET = 1.0
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# ---------------------------------------------------------------------------- normalisation

# Ink is found on a copy reduced to this longer side (fast: ~16k pixels), then each digit is cut
# from the full-resolution image. Numbers need more room, one digit next to the other.
_COARSE_SIDE = 128
COARSE_SIDE_NUMBER = 512
# Where the reduced copy shows no digit, it is looked for again on one of this side (``_strength``).
_COARSE_SIDE_AFAR = 512
# Ink found without Otsu's split lies this many times the paper's noise below it, at least.
_SPARSE_NOISE = 6
# Each digit crop is reduced to at most this side before its strokes are measured: 4x the 20-pixel box.
_FINE_SIDE = 80
# Paper whose fitted brightness varies by more than this (0-255) is evened out before thresholding,
# if it is light paper (its usual level at least _LIGHT_PAPER). The light is fitted on a grid of
# _LIGHT_KNOTS x _LIGHT_KNOTS knots across the image.
_UNEVEN_LIGHT = 20.0
_LIGHT_PAPER = 96
_LIGHT_KNOTS = 4
# Pixels darker than the paper around them by this share of the image's contrast are ink, not shade.
_INK_DEPTH = 0.15


@dataclass(frozen=True)
class Ink:
    """Where the ink is, found on a reduced copy of the image (``factor`` times smaller)."""

    gray: np.ndarray  # the full-resolution image, uint8
    dark_ink: bool  # True for dark ink on light paper (to be inverted)
    paper: float  # the paper's level and the ink's full level, on the 0-255 ink scale
    full: float
    factor: int
    labels: np.ndarray  # connected components of the reduced copy
    marks: list[int]  # the components that are not specks
    slices: list[tuple[slice, slice]]  # their boxes in the reduced copy


def _as_bytes(gray: np.ndarray) -> np.ndarray:
    """uint8 images pass through; float images in [0, 1] are scaled to bytes."""
    gray = np.asarray(gray)
    if gray.dtype == np.uint8:
        return gray
    return np.round(np.clip(gray.astype(np.float32), 0.0, 1.0) * 255).astype(np.uint8)


# Longer than 60 lines on purpose: the steps (threshold, polarity, hysteresis, bridging, specks) each
# refine the arrays of the one before, and read best as one pass in order.
def find_ink(
    gray: np.ndarray,
    coarse_side: int,
    remove_lines: bool = True,
    find_sheet: bool = True,
    sparse: bool = False,
) -> Ink:
    """Threshold, fix polarity and find the marks (connected components) that are not specks.

    Unless ``find_sheet`` is False, a sheet of paper photographed on a darker desk (``_sheet``) is
    found first, and the image is read again with the desk painted the sheet's colour. Unless
    ``remove_lines`` is False, the lines of ruled or squared paper (``paper_lines``) and the
    sides of a box that the writing touches (``_frames``) are painted over, and the image is
    read again without them. A frame clear of the writing is not a mark. ``sparse`` takes for ink
    what lies far darker than the paper (``_sparse_threshold``) rather than Otsu's split, for dark
    ink too little of the image for that split to find."""
    from PIL import Image

    gray = _as_bytes(gray)
    if gray.ndim != 2 or min(gray.shape) < 2:
        raise NoDigitError("no digit found: the image is too small")
    factor = reduction_factor(gray.shape, coarse_side)
    # Box-averaging the reduced copy also removes sensor and JPEG noise before thresholding.
    coarse = np.asarray(Image.fromarray(gray).reduce(factor)) if factor > 1 else gray
    hist = np.bincount(coarse.ravel(), minlength=256).astype(np.float64)
    threshold = _threshold(coarse, hist, sparse)
    # Before the light is evened out, which would take a desk for a shadow across the paper.
    sheet = _sheet(coarse, threshold) if find_sheet else None
    if sheet is not None:
        level = np.uint8(np.median(coarse[sheet & (coarse > threshold)]))
        return find_ink(_on_the_sheet(gray, sheet, factor, level), coarse_side, remove_lines, False, sparse)
    lighting = _illumination(coarse) if _may_be_unevenly_lit(coarse, hist, threshold) else None
    if lighting is not None:  # a shadow or a vignette: divide the light out, as a scanner would
        coarse, gray = _even_out(coarse, lighting), _even_out(gray, lighting)
        hist = np.bincount(coarse.ravel(), minlength=256).astype(np.float64)
        threshold = _threshold(coarse, hist, sparse)
    light = coarse > threshold
    # Polarity: the paper is whatever most of the border is. MNIST wants light ink on black.
    border = _border(light)
    dark_ink = np.count_nonzero(border) > border.size / 2
    mask = ~light if dark_ink else light
    levels = np.arange(256, dtype=np.float64)
    if dark_ink:
        hist, levels = hist[::-1], 255.0 - levels[::-1]
        threshold = 255 - threshold - 1
    ink_hist, paper_hist = hist[levels > threshold], hist[levels <= threshold]
    if not ink_hist.sum() or not paper_hist.sum():
        raise NoDigitError()
    paper = float((paper_hist * levels[levels <= threshold]).sum() / paper_hist.sum())
    ink_levels = levels[levels > threshold]
    full = float(ink_levels[np.searchsorted(np.cumsum(ink_hist), ink_hist.sum() / 2)])
    if full - paper < 255 * _MIN_CONTRAST:
        raise NoDigitError()

    # Hysteresis: a fine pen's stroke fades below the threshold where it is thinnest, so pixels two
    # thirds of the way from the paper to it join a mark when they touch one, and gaps of a pixel or
    # two are bridged: a thin 6 or 8 stays one mark instead of pieces, some too small to keep.
    on_ink_scale = 255 - coarse.astype(np.int16) if dark_ink else coarse  # threshold and paper's scale
    weak = on_ink_scale > (2 * threshold + paper) / 3
    found = paper_lines(weak) if remove_lines else []
    if found:
        return find_ink(
            _without_lines(gray, found, factor, dark_ink), coarse_side, False, find_sheet=False, sparse=sparse
        )
    pieces, count = ndimage.label(weak, structure=_EIGHT_CONNECTED)
    piece_areas = np.bincount(pieces[mask], minlength=count + 1)
    piece_areas[0] = 0
    # Specks too small to be a piece of a stroke are not bridged to the strokes beside them.
    weak &= (piece_areas >= _MIN_PIECE_FRACTION * piece_areas.max())[pieces]
    bridged = _dilate(weak)
    labels, count = ndimage.label(bridged, structure=_EIGHT_CONNECTED)
    labels[~weak] = 0
    areas = np.bincount(labels[mask], minlength=count + 1)  # strong ink only: no mark of faint pixels
    areas[0] = 0
    slices = ndimage.find_objects(labels)
    frames, sides = _frames(labels, areas, mask, slices)
    if sides and remove_lines:
        return find_ink(
            _without_lines(gray, sides, factor, dark_ink), coarse_side, False, find_sheet=False, sparse=sparse
        )
    for frame in frames:
        labels[labels == frame] = 0
        areas[frame] = 0
    if not areas.any():
        raise NoDigitError()
    big = np.flatnonzero(areas >= _MIN_MARK_FRACTION * areas.max())
    # Smaller marks count too where they lie within the big ones' reach: the pieces of a broken
    # stroke, the dot of a dry pen; dust away from the writing does not.
    rows, cols = union([slices[i - 1] for i in big])
    reach_y, reach_x = 0.15 * (rows.stop - rows.start), 0.15 * (cols.stop - cols.start)
    near = [
        i
        for i in np.flatnonzero(areas >= _MIN_PIECE_FRACTION * areas.max())
        if slices[i - 1][0].start >= rows.start - reach_y
        and slices[i - 1][0].stop <= rows.stop + reach_y
        and slices[i - 1][1].start >= cols.start - reach_x
        and slices[i - 1][1].stop <= cols.stop + reach_x
    ]
    marks = sorted({int(i) for i in (*big, *near)})
    labels[~mask] = 0  # faint pixels joined the marks up; the crops take ink from the strong ones
    return Ink(gray, dark_ink, paper, full, factor, labels, marks, [slices[i - 1] for i in marks])


# A paper's line runs nearly straight across the image: within _LINE_DEGREES of horizontal (or of
# vertical, where horizontal lines are found too), with ink in at least _LINE_COVERAGE of the columns
# (rows) it crosses, and on beyond the writing on both sides by _BEYOND_WRITING of the image's width
# (height).
_LINE_DEGREES = 10.0
_LINE_SLOPES = np.tan(np.radians(np.arange(-_LINE_DEGREES, _LINE_DEGREES + 0.25, 0.5)))
_LINE_COVERAGE = 0.9
_BEYOND_WRITING = 0.05
# And it is thin: within a pixel of it, at most this share of the image's height (width), plus 3.
_LINE_THICKNESS = 0.05
# A box's sides lie within this share of its height (width) of the edges of its mark's own box, and
# run along at least _BOX_SIDE_COVERAGE of it: a side of a box turned by an angle a covers
# 1 / (1 + tan a) of it (0.9 at 6 degrees, 0.8 at 14).
_BOX_EDGE = 0.15
_BOX_SIDE_COVERAGE = 0.8


# A sheet of paper on a darker desk: the largest light region, filled, covers at least _SHEET_AREA of
# the image and is convex (at least _SHEET_CONVEX of its convex hull, as a rectangle turned or cut off
# by the frame is); the writing it encloses is at least _SHEET_WRITING[0] of it, at most
# _SHEET_WRITING[1]; and it is paper around strokes, not a stroke around a hole: its deepest light pixel
# lies at least _SHEET_DEPTH times as deep inside it as the writing's deepest pixel lies inside the
# writing (a white 0 on black is a ring, no deeper than its hole), and the writing's biggest piece
# spans at least _SHEET_SPAN times that depth (a stroke, not the pinholes of a fat white 0 or 8). A
# sheet that is a rectangle (at least _SHEET_RECTANGLE of the smallest one around it, turned or cut
# off by the frame; a white digit's outline is rounder) passes with _SHEET_RECTANGLE_DEPTH and
# _SHEET_RECTANGLE_SPAN instead: a thick pen on a small sheet leaves less paper beside its strokes.
# The desk, all that lies beyond the sheet, is at least _DESK_AREA of the image (the corners a turned
# photo fills are less), runs along at least _DESK_BORDER of the image's border (the ends of ruled
# lines that reach an edge, with any writing on them, only dot it), and is a photographed surface,
# not flat: no one grey level holds _DESK_FLAT of it (a Fashion-MNIST item lies on exactly 0).
_SHEET_AREA = 0.2
_SHEET_CONVEX = 0.9
_SHEET_WRITING = (0.003, 0.25)
_SHEET_DEPTH = 4.0
_SHEET_SPAN = 5.0
_SHEET_RECTANGLE = 0.85
_SHEET_RECTANGLE_DEPTH = 3.0
_SHEET_RECTANGLE_SPAN = 4.0
_DESK_AREA = 0.02
_DESK_BORDER = 0.1
_DESK_FLAT = 0.5


def _sheet(coarse: np.ndarray, threshold: int) -> np.ndarray | None:
    """The sheet of paper in a photo of one lying on a darker desk (or on a darker part of the paper:
    a box on a form), as a mask of the reduced copy ``coarse``, or None if its pixels lighter than
    ``threshold`` show no such sheet. The desk touches the image's edges, so without this it sets the
    polarity (a light mark on a dark ground) or makes marks of its own along the edges."""
    light = coarse > threshold
    if _border(light).all():  # paper to every edge: no desk
        return None
    labels, count = ndimage.label(light, structure=_EIGHT_CONNECTED)
    if not count:
        return None
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    paper = labels == areas.argmax()
    sheet = ndimage.binary_fill_holes(paper)
    area = np.count_nonzero(sheet)
    writing = sheet & ~light  # what the sheet encloses, but for paper inside a loop of a 0 or an 8
    desk = coarse[~sheet]
    if not (
        _SHEET_AREA * light.size <= area <= (1 - _DESK_AREA) * light.size
        and _SHEET_WRITING[0] <= np.count_nonzero(writing) / area <= _SHEET_WRITING[1]
        and _border(~sheet).mean() >= _DESK_BORDER
        and np.bincount(desk).max() < _DESK_FLAT * desk.size
    ):
        return None
    hull = _hull(sheet)
    if area < _SHEET_CONVEX * hull.volume:  # a 2-D hull's "volume" is its area
        return None
    stroke = ndimage.distance_transform_edt(writing).max()
    pieces, _ = ndimage.label(writing, structure=_EIGHT_CONNECTED)
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    rows, cols = ndimage.find_objects(pieces)[sizes.argmax() - 1]
    depth = ndimage.distance_transform_edt(paper).max()
    span = max(rows.stop - rows.start, cols.stop - cols.start)
    if depth >= _SHEET_DEPTH * stroke and span >= _SHEET_SPAN * stroke:
        return sheet
    if (
        depth >= _SHEET_RECTANGLE_DEPTH * stroke
        and span >= _SHEET_RECTANGLE_SPAN * stroke
        and area >= _SHEET_RECTANGLE * _smallest_rectangle_area(hull.points[hull.vertices])
    ):
        return sheet
    return None


def _hull(mask: np.ndarray):
    """The convex hull (scipy's ``ConvexHull``) of a mask's pixels, taken as unit squares."""
    from scipy.spatial import ConvexHull

    edge = np.argwhere(mask & ~ndimage.binary_erosion(mask))
    offsets = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    return ConvexHull((edge[:, None, :] + offsets).reshape(-1, 2))


def _smallest_rectangle_area(polygon: np.ndarray) -> float:
    """The area of the smallest rectangle, at any angle, around a convex polygon's vertices (N, 2):
    one of its sides lies along a side of the polygon (Freeman and Shapira, 1975)."""
    sides = np.diff(np.vstack([polygon, polygon[:1]]), axis=0)
    angles = np.arctan2(sides[:, 1], sides[:, 0])
    # The vertices in each side's frame: a rotation by minus that side's angle.
    cos, sin = np.cos(angles), np.sin(angles)
    along = polygon[:, 0, None] * cos + polygon[:, 1, None] * sin
    across = polygon[:, 1, None] * cos - polygon[:, 0, None] * sin
    return float((np.ptp(along, axis=0) * np.ptp(across, axis=0)).min())


def _on_the_sheet(gray: np.ndarray, sheet: np.ndarray, factor: int, level: np.uint8) -> np.ndarray:
    """The full-resolution image with everything beyond ``sheet`` (found on its copy reduced ``factor``
    times) painted the paper's ``level``, the sheet's own rim too: its edge is shade and blur."""
    inside = ndimage.binary_erosion(sheet)
    inside = np.repeat(np.repeat(inside, factor, axis=0), factor, axis=1)[: gray.shape[0], : gray.shape[1]]
    return np.where(inside, gray, level)


@dataclass(frozen=True)
class Line:
    """A straight line on the reduced copy: ``y = offset + slope * x`` (``x = offset + slope * y``
    if ``vertical``), ``half`` its half-thickness, in the reduced copy's pixels."""

    vertical: bool
    slope: float
    offset: float
    half: float


def paper_lines(ink: np.ndarray) -> list[Line]:
    """The lines of ruled or squared paper in a reduced copy's ink mask: thin straight lines, two or
    more side by side, that run across the image and on beyond the rest of the ink, which a digit's
    own strokes never do. Vertical lines count only beside horizontal ones (squared paper): a tall 1
    alone may run from top to bottom."""
    horizontal = _lines_across(ink)
    if len(horizontal) < 2:
        return []  # a paper's lines come ruled, several; one line may be a shoe's sole, or an underline
    vertical = _lines_across(ink.T)
    found = [Line(False, *line) for line in horizontal]
    found += [Line(True, *line) for line in vertical] if len(vertical) >= 2 else []
    rest = ink & ~_line_mask(ink.shape, found)
    if not rest.any():
        return []  # nothing but lines: there is no writing to tell them from
    # The writing is what is left clear of the image's edges (the ends of lines that did not run far
    # enough to count end there), or all of it where every piece touches an edge.
    inside = _clear_of_edges(ndimage.label(rest, structure=_EIGHT_CONNECTED)[0])
    writing = inside if inside.any() else rest
    rows, cols = np.flatnonzero(writing.any(axis=1)), np.flatnonzero(writing.any(axis=0))
    height, width = ink.shape
    beyond = {  # on both sides: a 7's bar may run on beyond its stem, but only on one side
        False: min(cols[0], width - 1 - cols[-1]) >= _BEYOND_WRITING * width,
        True: min(rows[0], height - 1 - rows[-1]) >= _BEYOND_WRITING * height,
    }
    return [line for line in found if beyond[line.vertical]]


def _lines_across(ink: np.ndarray, coverage: float = _LINE_COVERAGE) -> list[tuple[float, float, float]]:
    """Nearly horizontal lines across ``ink`` (slope, offset, half-thickness) with ink in at least
    ``coverage`` of its columns, all at the one slope at which they cover the most: a straight-line
    (Hough) vote over a narrow range of slopes."""
    height, width = ink.shape
    if np.count_nonzero(ink.any(axis=0)) < coverage * width:
        return []  # most images: no ink runs across them at all
    ys, xs = np.nonzero(ink)
    reach = int(np.ceil(width * _LINE_SLOPES.max())) + 2
    best = None
    for slope in _LINE_SLOPES:
        hit = np.zeros((height + 2 * reach, width), dtype=bool)
        hit[np.round(ys - xs * slope).astype(np.intp) + reach, xs] = True
        near = hit.copy()  # within a row of the line: a thin line's pixels round to two offsets
        near[1:] |= hit[:-1]
        near[:-1] |= hit[1:]
        covered = near.sum(axis=1) / width
        score = float(covered[covered >= coverage].sum())
        if score and (best is None or score > best[0]):
            best = (score, slope, hit.sum(axis=1) / width, covered >= coverage)
    if best is None:
        return []
    _, slope, own, across = best
    lines = []
    runs, _ = ndimage.label(across)
    for run in ndimage.find_objects(runs):
        start, stop = run[0].start, run[0].stop
        # A line is thin, with paper just beyond it on both sides; the rows of a solid object that
        # fills the image's width are neither.
        beyond = own[max(start - 2, 0)], own[min(stop + 1, len(own) - 1)]
        if stop - start > _LINE_THICKNESS * height + 3 or max(beyond) >= 0.5:
            continue
        offsets = np.arange(start, stop)
        weights = own[offsets]
        on = offsets[weights >= 0.25 * weights.max()]
        centre = float((weights @ offsets) / weights.sum()) - reach
        lines.append((float(slope), centre, (on[-1] - on[0] + 1) / 2))
    return lines


def _line_mask(shape: tuple[int, int], lines: list[Line]) -> np.ndarray:
    """The pixels of a reduced copy within reach of ``lines``: a pixel beyond half their thickness."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    mask = np.zeros(shape, dtype=bool)
    for line in lines:
        along, across = (y, x) if line.vertical else (x, y)
        mask |= np.abs(across - line.offset - line.slope * along) <= line.half + 1
    return mask


def _without_lines(gray: np.ndarray, lines: list[Line], factor: int, dark_ink: bool) -> np.ndarray:
    """The full-resolution image with ``lines`` (found on its copy reduced ``factor`` times) painted
    over: each pixel of a line takes the paper's side of the two pixels just beyond it, across the
    line (the lighter for dark ink), so a stroke that crosses the line, ink on both sides, stays whole."""
    out = gray.copy()
    for line in lines:
        image = out.T if line.vertical else out  # a view: vertical lines are horizontal in it
        length, extent = image.shape[1], image.shape[0]
        along = np.arange(length)
        # Centre of each full-resolution column in the reduced copy's coordinates, and back.
        centre = ((line.offset + line.slope * ((along + 0.5) / factor - 0.5)) + 0.5) * factor - 0.5
        half = (line.half + 0.5) * factor
        first = np.clip(np.ceil(centre - half).astype(np.intp), 1, extent - 1)
        last = np.clip(np.floor(centre + half).astype(np.intp), 0, extent - 2)
        before, after = image[first - 1, along], image[last + 1, along]
        fill = np.maximum(before, after) if dark_ink else np.minimum(before, after)
        for step in range(int(np.ceil(2 * half)) + 1):
            rows = first + step
            inside = rows <= last
            image[rows[inside], along[inside]] = fill[inside]
    return out


def _frames(
    labels: np.ndarray, areas: np.ndarray, mask: np.ndarray, slices: list
) -> tuple[list[int], list[Line]]:
    """Marks that frame the writing, not part of it (a form's box, a ring drawn round the digits),
    and the sides of a box that the writing touches.

    A frame is mostly hole. One clear of the writing holds in its hole at least half of the other
    marks' ink, and at least a tenth of its own (a 0 with a speck in it is not one). A box the writing
    touches is one mark with it: four straight sides along the edges of the mark's own box, with ink
    left inside them (a square 0 is all sides). A box cut off by the photo's edge is closed by that
    edge (``_closed_by_the_edges``), whose side is not painted over: it is not in the image."""
    frames, sides = [], []
    if not areas.any():
        return frames, sides
    big = np.flatnonzero(areas >= _MIN_MARK_FRACTION * areas.max())
    for i in big:
        box = slices[i - 1]
        own = labels[box] == i
        closed = _closed_by_the_edges(own, box, labels.shape)
        others, four_sided = int(areas.sum() - areas[i]), _four_sided(closed)
        if not (others or four_sided):
            continue  # a digit alone, the usual case: nothing to enclose and no box to touch
        holes = _holes(closed)
        if np.count_nonzero(holes) < np.count_nonzero(own):
            continue
        enclosed = int(np.count_nonzero(holes & mask[box] & (labels[box] > 0)))
        if enclosed and enclosed >= 0.5 * others and enclosed >= 0.1 * areas[i]:
            frames.append(int(i))
        elif not enclosed and four_sided:
            found = _box_sides((own & mask[box]) | (closed & ~own), box)
            sides += [line for line in found if not _along_the_edge(line, labels.shape)]
    return frames, sides


def _closed_by_the_edges(own: np.ndarray, box: tuple[slice, slice], shape: tuple[int, int]) -> np.ndarray:
    """A mark's ink in its box, with a side added along each edge of the image that the mark
    touches: a box whose side the photo cut off is closed by the photo's edge. Not where it touches
    three edges or four: a digit cropped tightly does, and its strokes along the fourth would pass
    for a box's last sides."""
    rows, cols = box
    touched = (rows.start == 0, rows.stop == shape[0], cols.start == 0, cols.stop == shape[1])
    if not any(touched) or sum(touched) > 2:
        return own  # the usual case, a mark clear of the edges: no copy
    closed = own.copy()
    closed[0] |= touched[0]
    closed[-1] |= touched[1]
    closed[:, 0] |= touched[2]
    closed[:, -1] |= touched[3]
    return closed


def _along_the_edge(line: Line, shape: tuple[int, int]) -> bool:
    """Whether a line (on a reduced copy of ``shape``) runs along one of the image's edges: the side
    that ``_closed_by_the_edges`` added."""
    extent, length = (shape[1], shape[0]) if line.vertical else shape
    middle = line.offset + line.slope * (length - 1) / 2
    return middle < 1 or middle > extent - 2


def _four_sided(own: np.ndarray) -> bool:
    """Whether a mark has ink along all four edges of its box (within _BOX_EDGE of each), as a box
    has: a quick test before the slower ones."""
    rows, cols = max(1, round(_BOX_EDGE * own.shape[0])), max(1, round(_BOX_EDGE * own.shape[1]))
    bands = (
        own[:rows].any(axis=0),
        own[-rows:].any(axis=0),
        own[:, :cols].any(axis=1),
        own[:, -cols:].any(axis=1),
    )
    return all(np.count_nonzero(band) >= _LINE_COVERAGE * band.size for band in bands)


def _holes(own: np.ndarray) -> np.ndarray:
    """The holes of a mark in its box: the paper it encloses (4-connected, as the mark is 8-connected)."""
    return _clear_of_edges(ndimage.label(~own)[0])


def _clear_of_edges(labels: np.ndarray) -> np.ndarray:
    """The pixels of the labelled components that touch none of the image's edges."""
    return (labels > 0) & ~np.isin(labels, np.unique(_border(labels)))


def _box_sides(own: np.ndarray, box: tuple[slice, slice]) -> list[Line]:
    """The four sides of a box in a mark's ink ``own`` (its box ``box`` of the reduced copy), in the
    copy's coordinates, if it has four, each within _BOX_EDGE of its edge, and ink inside them; else []."""
    found = []
    for vertical, mark in ((False, own), (True, own.T)):
        extent = mark.shape[0]
        lines = [Line(vertical, *line) for line in _lines_across(mark, _BOX_SIDE_COVERAGE)]
        middle = [line.offset + line.slope * mark.shape[1] / 2 for line in lines]
        near = [
            line
            for line, at in zip(lines, middle, strict=True)
            if min(at, extent - 1 - at) <= _BOX_EDGE * extent
        ]
        if not any(at <= _BOX_EDGE * extent for at in middle) or not any(
            at >= (1 - _BOX_EDGE) * extent - 1 for at in middle
        ):
            return []
        found += near
    inside = own & ~_line_mask(own.shape, found)
    if np.count_nonzero(inside) < 0.1 * np.count_nonzero(own):
        return []
    top, left = box[0].start, box[1].start
    return [
        Line(
            line.vertical,
            line.slope,
            line.offset + (left - line.slope * top if line.vertical else top - line.slope * left),
            line.half,
        )
        for line in found
    ]


def _off_the_edges(ink: Ink) -> list[int]:
    """The indices of ``ink.marks`` worth reading: all of them, unless marks clear of the image's edges
    hold at least a quarter of the ink and others touch an edge (a shadow or the rim of the page)."""
    height, width = ink.labels.shape
    touching = [
        s[0].start == 0 or s[1].start == 0 or s[0].stop == height or s[1].stop == width for s in ink.slices
    ]
    if all(touching) or not any(touching):
        return list(range(len(ink.marks)))
    areas = np.bincount(ink.labels.ravel(), minlength=max(ink.marks) + 1)
    inside = sum(areas[m] for m, edge in zip(ink.marks, touching, strict=True) if not edge)
    clear = inside >= 0.25 * sum(areas[m] for m in ink.marks)
    return [i for i, edge in enumerate(touching) if not (edge and clear)]


def _border(image: np.ndarray) -> np.ndarray:
    """The pixels along an image's four edges, each once."""
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def _hats(shape: tuple[int, int], step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear hats on a coarse grid of knots, at every ``step``-th row and column: (rows, knots)
    and (columns, knots). Their products span a surface smooth enough to follow a vignette or a
    shadow across a corner (knots a third of the image apart), but not a pen stroke."""
    knots = np.arange(_LIGHT_KNOTS, dtype=np.float32)

    def hats(n: int) -> np.ndarray:
        at = (np.arange(0, n, step, dtype=np.float32) + 0.5) / n * (_LIGHT_KNOTS - 1)
        return np.maximum(0.0, 1.0 - np.abs(at[:, None] - knots))

    return hats(shape[0]), hats(shape[1])


def _may_be_unevenly_lit(coarse: np.ndarray, hist: np.ndarray, threshold: int) -> bool:
    """False when a glance shows evenly lit paper, which saves fitting the light on most drawings
    and scans: the paper (the larger side of the threshold) spans few grey levels, and the ink (the
    other side) is a modest share of the image that stays off its edges, where shadows come in."""
    below, above = hist[: threshold + 1], hist[threshold + 1 :]
    light_paper = above.sum() >= below.sum()
    paper, levels = (
        (above, np.arange(threshold + 1, 256)) if light_paper else (below, np.arange(threshold + 1))
    )
    share = np.cumsum(paper) / paper.sum()
    spread = levels[np.searchsorted(share, 0.95)] - levels[np.searchsorted(share, 0.05)]
    edges = _border(coarse) > threshold
    ink_on_edges = np.count_nonzero(edges != light_paper) / edges.size
    return bool(spread > _UNEVEN_LIGHT or ink_on_edges > 0.05 or paper.sum() < 0.7 * hist.sum())


def _illumination(coarse: np.ndarray) -> np.ndarray | None:
    """The paper's brightness as a (knots, knots) grid of a smooth surface, or None if it is even.

    Fitted robustly: the ink, a minority of pixels far from the surface, is left out of each refit,
    so the surface follows the paper whichever its polarity.
    """
    step = max(1, round(np.sqrt(coarse.size / 1024)))  # ~1k pixels are plenty for 16 numbers
    rows, cols = _hats(coarse.shape, step)
    terms = (rows[:, None, :, None] * cols[None, :, None, :]).reshape(len(rows) * len(cols), -1)
    values = coarse[::step, ::step].astype(np.float32).ravel()
    level = float(np.median(values))  # most pixels are paper
    values -= level
    paper = _paper_seed(coarse, step)
    # A touch of ridge regression keeps the solve well-posed when a knot has no paper near it (under a
    # big digit), holding that knot at the paper's usual level.
    ridge = 1e-4 * len(values) * np.eye(terms.shape[1], dtype=np.float32)
    for _ in range(5):
        on_paper = terms[paper]
        coefficients = np.linalg.solve(on_paper.T @ on_paper + ridge, on_paper.T @ values[paper])
        residual = values - terms @ coefficients
        spread = 1.4826 * np.median(np.abs(residual[paper])) + 1.0  # robust sigma, plus sensor noise
        paper = np.abs(residual) < 3 * spread
    coefficients += level  # the hats sum to one everywhere, so this lifts the whole surface
    low, middle, high = np.percentile(terms[paper] @ coefficients, [2, 50, 98])
    # Light is divided out of light paper only: a dark background (MNIST's own, a blackboard) has too
    # little light to divide by, and its ink is found as it is.
    uneven = middle >= _LIGHT_PAPER and high - low > _UNEVEN_LIGHT
    return coefficients.reshape(_LIGHT_KNOTS, _LIGHT_KNOTS) if uneven else None


def _paper_seed(coarse: np.ndarray, step: int) -> np.ndarray:
    """Where the light fit starts: pixels no darker than the paper around them (flattened, every
    ``step``-th row and column). A grey closing over a quarter of the image fills in the strokes
    but keeps a shadow or a vignette, which are wider; pixels well below it are ink and are left out
    of the first fit. Starting from every pixel instead, a digit that fills a small image (a
    low-resolution scan) pulled the surface into its strokes, and their fainter parts were divided
    out as if they were shade."""
    size = max(3, round(min(coarse.shape) / 4))
    closed = ndimage.grey_closing(coarse, size=(size, size)).astype(np.float32)
    contrast = max(float(closed.max()) - float(coarse.min()), 1.0)
    return ((closed - coarse) < _INK_DEPTH * contrast)[::step, ::step].ravel()


def _even_out(gray: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Divide the fitted light out of an image (of any size): the paper comes out at one level."""
    rows, cols = _hats(gray.shape)
    surface = rows @ grid @ cols.T  # the surface is separable: no per-pixel basis needed
    level = float(np.median(surface))
    evened = gray.astype(np.float32) * (level / np.maximum(surface, 8.0))
    return np.clip(evened, 0, 255).round().astype(np.uint8)


def _threshold(coarse: np.ndarray, hist: np.ndarray, sparse: bool) -> int:
    """The grey level that splits ink from paper on ``coarse`` (whose histogram is ``hist``): Otsu's,
    or ``_sparse_threshold`` for sparse ink. Raises ``NoDigitError`` where the paper is so dark that
    no ink can lie that far below it (the sparse split would fall under 0)."""
    threshold = _sparse_threshold(coarse) if sparse else _otsu(hist)
    if threshold < 0:
        raise NoDigitError()
    return threshold


def _sparse_threshold(coarse: np.ndarray) -> int:
    """A threshold for dark ink too sparse for Otsu's split (a digit written small on a big sheet,
    where Otsu splits the paper's own noise in two): the paper's median level less the larger of
    ``_MIN_CONTRAST`` and ``_SPARSE_NOISE`` times the paper's noise (its median absolute deviation,
    scaled to a standard deviation)."""
    paper = float(np.median(coarse))
    noise = 1.4826 * float(np.median(np.abs(coarse.astype(np.float64) - paper)))
    return int(paper - max(255 * _MIN_CONTRAST, _SPARSE_NOISE * noise))


def _otsu(hist: np.ndarray) -> int:
    """Otsu's threshold for a 256-bin histogram: the level that best splits it into two classes."""
    levels = np.arange(256, dtype=np.float64)
    weight = np.cumsum(hist)
    total = weight[-1]
    mean = np.cumsum(hist * levels)
    spread = weight * (total - weight)
    split = spread > 0  # levels with pixels on both sides
    between = np.zeros(256)
    between[split] = (mean[-1] * weight[split] - mean[split] * total) ** 2 / spread[split]
    return int(np.argmax(between))


def union(slices: list[tuple[slice, slice]]) -> tuple[slice, slice]:
    return (
        slice(min(s[0].start for s in slices), max(s[0].stop for s in slices)),
        slice(min(s[1].start for s in slices), max(s[1].stop for s in slices)),
    )


def cut(
    ink: Ink,
    marks: list[int],
    box: tuple[slice, slice],
    sides: tuple[int, int] = (1, 1),
    within: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The ink strength (0..1) of the given marks, cut from the full-resolution image, tightly cropped.

    ``sides`` are the margins left and right, in coarse pixels (0 where a touching neighbour was cut off).
    ``within``, a mask the shape of ``ink.labels``, keeps only its pixels: one digit's side of the
    path that parts it from a touching neighbour.
    """
    f, (height, width) = ink.factor, ink.labels.shape
    # One coarse pixel of margin keeps the anti-aliased edges of the strokes.
    rows = slice(max(box[0].start - 1, 0), min(box[0].stop + 1, height))
    cols = slice(max(box[1].start - sides[0], 0), min(box[1].stop + sides[1], width))
    labels = ink.labels[rows, cols]
    own = labels == marks[0] if len(marks) == 1 else np.isin(labels, marks)
    own = _dilate(own)
    if within is not None:
        own &= within[rows, cols]
    fine_rows = slice(rows.start * f, min(rows.stop * f, ink.gray.shape[0]))
    fine_cols = slice(cols.start * f, min(cols.stop * f, ink.gray.shape[1]))
    crop = ink.gray[fine_rows, fine_cols].astype(np.float32)
    if ink.dark_ink:
        crop = 255.0 - crop
    strength = np.clip((crop - ink.paper) / (ink.full - ink.paper), 0.0, 1.0)
    if f > 1:
        own = np.repeat(np.repeat(own, f, axis=0), f, axis=1)[: crop.shape[0], : crop.shape[1]]
    strength[~own] = 0.0
    inked_rows = np.flatnonzero((strength > 0.5).any(axis=1))
    inked_cols = np.flatnonzero((strength > 0.5).any(axis=0))
    if not inked_rows.size:
        raise NoDigitError()
    tight = (slice(inked_rows[0], inked_rows[-1] + 1), slice(inked_cols[0], inked_cols[-1] + 1))
    original = (
        slice(fine_rows.start + tight[0].start, fine_rows.start + tight[0].stop),
        slice(fine_cols.start + tight[1].start, fine_cols.start + tight[1].stop),
    )
    return strength[tight], original


def to_mnist(strength: np.ndarray, width: int = 28) -> np.ndarray:
    """Scale a tight crop's longer side to 20 px and centre its mass in 28x28: MNIST's recipe.

    A ``width`` over 28 gives a wider input for a mark of two digits (``digits.pairs``): the crop
    is 20 px high, or ``width - 8`` wide where it is wider still, its mass centred in 28 x ``width``."""
    from PIL import Image

    reduction = reduction_factor(strength.shape, _FINE_SIDE)
    image = Image.fromarray(strength.astype(np.float32), "F")
    inked = strength > 0.5
    if reduction > 1:
        image = image.reduce(reduction)
        inked = _block_any(inked, reduction)[: image.size[1], : image.size[0]]
    crop = np.asarray(image, dtype=np.float32)
    scale = min(20.0 / crop.shape[0], (width - 8.0) / crop.shape[1])
    # Thin pen strokes in a big photo, or a mouse's on a big canvas, would shrink to a faint hairline
    # at 20 px, unlike anything in MNIST: thicken them to MNIST's typical width first. (Thinning
    # markers' strokes here, tried too, lost more digits than it saved: see ``thinned``.)
    stroke = _stroke_width(inked)
    if stroke * scale < _THIN * _MNIST_STROKE:
        grow = (_MNIST_STROKE / scale - stroke) / 2
        margin = int(np.ceil(grow))
        crop = np.pad(crop, margin)
        thick = ndimage.distance_transform_edt(~np.pad(inked, margin)) <= grow
        crop = np.maximum(crop, thick.astype(np.float32))
        image = Image.fromarray(crop, "F")
        scale = min(20.0 / crop.shape[0], (width - 8.0) / crop.shape[1])

    small_height = min(28, max(1, round(crop.shape[0] * scale)))
    small_width = min(width, max(1, round(crop.shape[1] * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    small = np.clip(
        np.asarray(image.resize((small_width, small_height), resample), dtype=np.float32), 0.0, 1.0
    )
    if small.max() <= 0:
        raise NoDigitError()
    small /= small.max()

    mass = small.sum(dtype=np.float64)
    centre_y = float(small.sum(axis=1, dtype=np.float64) @ np.arange(small_height)) / mass
    centre_x = float(small.sum(axis=0, dtype=np.float64) @ np.arange(small_width)) / mass
    # MNIST's centres of mass sit at (14, 14) in pixel-index coordinates.
    top = min(max(round(14 - centre_y), 0), 28 - small_height)
    left = min(max(round(width / 2 - centre_x), 0), width - small_width)
    out = np.zeros((28, width), dtype=np.float32)
    out[top : top + small_height, left : left + small_width] = small
    # MNIST pixels are bytes; quantising makes the array exactly what a 28x28 8-bit image can show.
    return np.round(out * 255) / np.float32(255)


#: The longest pen path a digit traces in a model input (``ink_length``): the 99.9th percentile over
#: MNIST's 5,000 validation digits and their copies distorted by the handwriting augmentation, as
#: ``python benchmarks/ink_length.py`` measures it. Scribbles, spirals and crossings-out trace more.
LONGEST_DIGIT_INK = 56.5


def ink_length(image: np.ndarray) -> float:
    """About the length of the pen path in a 28x28 model input, in pixels: half the perimeter of
    its strokes (pixels over half ink with a 4-neighbour under half). A straight line 20 pixels
    long measures about 20; MNIST's 8s about 40."""
    ink = np.asarray(image).reshape(28, 28) > 0.5
    padded = _padded(ink)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return float(np.count_nonzero(ink & ~inner)) / 2


def _stroke_width(inked: np.ndarray) -> float:
    """A mask's mean stroke width in pixels, about 2 x area / perimeter."""
    perimeter = np.count_nonzero(inked & ~_erode(inked))
    return 2.0 * np.count_nonzero(inked) / max(perimeter, 1)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """A mask grown by one pixel in all eight directions: ``ndimage.binary_dilation`` with a 3x3
    square, as two separable passes. Equal to it, and about a tenth of its cost on the small masks
    of a request, where scipy's argument handling costs more than the work."""
    padded = _padded(mask)
    rows = padded[:-2] | padded[1:-1] | padded[2:]
    return rows[:, :-2] | rows[:, 1:-1] | rows[:, 2:]


def _erode(mask: np.ndarray) -> np.ndarray:
    """A mask shrunk by one pixel, the outside counting as empty: ``ndimage.binary_erosion`` with
    a 3x3 square, as two separable passes (see ``_dilate``)."""
    padded = _padded(mask)
    rows = padded[:-2] & padded[1:-1] & padded[2:]
    return rows[:, :-2] & rows[:, 1:-1] & rows[:, 2:]


def _padded(mask: np.ndarray) -> np.ndarray:
    """A boolean mask with a one-pixel empty border (what ``np.pad`` does, without its overhead)."""
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=bool)
    padded[1:-1, 1:-1] = mask
    return padded


def _block_any(mask: np.ndarray, size: int) -> np.ndarray:
    """Reduce a boolean mask by ``size``: a block is set if any of its pixels is (so thin lines survive)."""
    height, width = -(-mask.shape[0] // size) * size, -(-mask.shape[1] // size) * size
    padded = np.zeros((height, width), dtype=bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    return padded.reshape(height // size, size, width // size, size).any(axis=(1, 3))


def normalise(gray: np.ndarray) -> np.ndarray:
    """An arbitrary grayscale image (either polarity) -> MNIST-style float32 (28, 28) in [0, 1].

    ``gray`` is uint8, or float in [0, 1] (0 black, 1 white). Fixes polarity, removes noise and
    specks, crops to the ink, scales the longer side to 20 pixels keeping the aspect ratio, and
    centres the centre of mass in the 28x28 field. Raises ``NoDigitError`` for a blank image.
    """
    return to_mnist(_strength(gray))


def thinned(gray: np.ndarray) -> np.ndarray | None:
    """``normalise``'s model input with its strokes thinned to MNIST's width, if they are over
    ``_THICK`` times as thick (else None): a second look at a marker's or a thick pen's digit.

    A stroke that fills whole pixels of a low-resolution scan makes a solid bar or blob at 28x28,
    which a model taught that objects are not digits may refuse. Thinning every thick stroke before
    the first look lost digits instead (a 0 or an 8 whose holes the pen closed reads worse thinned),
    so the reader looks again only at what it refused (``inference.second_look``).
    """
    return thin_strokes(_strength(gray))


def thin_strokes(strength: np.ndarray) -> np.ndarray | None:
    """A tight crop's ink strength (``cut``) as a model input with its strokes thinned to MNIST's
    width, if they are over ``_THICK`` times as thick (else None): ``thinned``'s work, which the number
    reader also does for each mark it refuses whole (``number_reader.look_again``)."""
    inked = strength > 0.5
    scale = 20.0 / max(strength.shape)
    stroke = _stroke_width(inked)
    if stroke * scale <= _THICK * _MNIST_STROKE:
        return None
    strength = _erode_disk(strength, (stroke - _THICK_TARGET * _MNIST_STROKE / scale) / 2)
    inked = strength > 0.5
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
    if not rows.size:
        return None
    return to_mnist(strength[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])


def _erode_disk(image: np.ndarray, radius: float) -> np.ndarray:
    """``ndimage.grey_erosion`` of ``image`` with a disk of ``radius`` (the pixels ``x**2 + y**2 <=
    radius**2``), what lies beyond the image counting as 0: the crop is tight, so beyond it is paper,
    not a mirror of the strokes. The disk is taken row by row, as a one-dimensional minimum filter per
    row of it, shifted: the same minima in time that grows with the radius, not with its square (a
    big photo's marker digit took seconds)."""
    reach = int(np.ceil(radius))
    y, x = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    widths = np.count_nonzero(x**2 + y**2 <= radius**2, axis=1)  # the disk's width in each row
    height = image.shape[0]
    padded = np.zeros((height + 2 * reach, image.shape[1]), dtype=image.dtype)
    row_minima: dict[int, np.ndarray] = {}
    eroded = None
    for dy, width in zip(range(-reach, reach + 1), widths.tolist(), strict=True):
        if not width:
            continue
        if width not in row_minima:
            row_minima[width] = ndimage.minimum_filter1d(image, width, axis=1, mode="constant", cval=0.0)
        padded[reach : reach + height] = row_minima[width]
        shifted = padded[reach + dy : reach + dy + height]
        eroded = shifted.copy() if eroded is None else np.minimum(eroded, shifted, out=eroded)
    return eroded


def _strength(gray: np.ndarray) -> np.ndarray:
    """The ink strength (0..1) of the marks worth reading, tightly cropped.

    A digit written small in a big photo taken from afar spans a few pixels of the reduced copy,
    where its strokes fade into the paper, so where that copy shows none it is looked for again on
    one reduced less, and where Otsu's split finds none there either, by its contrast with the paper
    (``_sparse_threshold``): an image read today reads the same, only a refusal is looked at again."""
    try:
        ink = find_ink(gray, _COARSE_SIDE)
    except NoDigitError:
        afar = reduction_factor(gray.shape, _COARSE_SIDE_AFAR)
        if afar == reduction_factor(gray.shape, _COARSE_SIDE):
            raise
        try:
            ink = find_ink(gray, _COARSE_SIDE_AFAR)
        except NoDigitError:
            # Otsu's split finds no ink where the digit is a tiny part of the photo. Only on a copy
            # reduced at least twice, where box-averaging has smoothed away the single-pixel outliers
            # of sensor and JPEG noise that would otherwise pass for sparse ink on a blank page.
            if afar < 2:
                raise
            ink = find_ink(gray, _COARSE_SIDE_AFAR, sparse=True)
    keep = _off_the_edges(ink)
    strength, _ = cut(ink, [ink.marks[i] for i in keep], union([ink.slices[i] for i in keep]))
    return strength


# ---------------------------------------------------------------------------- files


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file (or a 28x28 ``.npy`` array) as a normalised 28x28 MNIST-style image.

    Image files go through ``decode_image`` and ``normalise``; a ``.npy`` array is taken to be
    MNIST-style already (centred, 28x28) and is only scaled to [0, 1], and flipped to white on black
    if it holds dark ink on light paper. A local file is the user's own, so photos up to
    ``FILE_MAX_PIXELS`` are read, more than the server's limit for untrusted uploads.
    """
    return read_image_file(path)[0]


def read_image_file(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``load_image``'s model input, and the grayscale pixels it was made from (None for a ``.npy``
    array), so that a second look (``thinned``) need not read and decode the file again."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return _from_array(path, _file_bytes(path)), None
    gray = decode_image_file(path).gray
    try:
        return normalise(gray), gray
    except ImageError as exc:
        exc.args = (f"{path}: {exc}",)
        raise


def decode_image_file(path: str | Path) -> DecodedImage:
    """A local image file decoded as ``decode_image`` does, up to ``FILE_MAX_PIXELS`` (the user's
    own photo, not an untrusted upload); an ``ImageError`` that names the file if it cannot be."""
    path = Path(path)
    data = _file_bytes(path)
    try:
        return decode_image(data, FILE_MAX_PIXELS)
    except ImageError as exc:
        exc.args = (f"{path}: {exc}",)
        raise


def _file_bytes(path: Path) -> bytes:
    """A local file's bytes, or an ``ImageError`` saying why there are none to read."""
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file", "missing")
    if not path.exists():
        raise ImageError(f"{path}: no such file", "missing")
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file", "missing")
    try:
        return path.read_bytes()
    except OSError as exc:  # a file this user may not read
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})", "missing") from None


def _from_array(path: Path, data: bytes) -> np.ndarray:
    if not data.startswith(b"\x93NUMPY"):  # else numpy blames "pickled data" for any other file
        raise ImageError(f"{path}: not a .npy array (no NumPy header)")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable .npy array ({exc})") from None
    array = np.squeeze(array)
    if array.shape != (28, 28) or array.dtype.kind not in "biuf":  # real numbers: no complex, no text
        raise ImageError(f"{path}: expected a numeric 28x28 array, got {array.dtype} {array.shape}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise ImageError(
            f"{path}: expected pixel values in [0, 1] or [0, 255], not NaN, infinite or negative"
        )
    array = array / 255.0 if array.max() > 1.0 else array
    # A light border is paper: MNIST's digits sit on black, with at least 4 empty pixels around them.
    if _border(array).mean() > 0.5:
        array = 1.0 - array
    if array.max() == 0:
        raise NoDigitError(f"{path}: no digit found: the array is blank")
    return array
