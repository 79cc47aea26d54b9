"""Turning real-world images into model inputs the way MNIST was made.

MNIST digits are light ink on black, their longer side scaled to 20 pixels (aspect ratio kept,
anti-aliased) and placed in a 28x28 field so that the centre of mass sits at the centre. Photos,
scans and canvas drawings are the opposite: dark ink on light paper, any size, anywhere in the frame.
This module bridges the two, with numpy, scipy.ndimage and Pillow only:

1. ``decode_image``: untrusted bytes -> grayscale float array, safely (size limits checked before
   decoding, one frame only, every Pillow failure turned into an ``ImageError``);
2. ``normalise``: grayscale -> float32 (28, 28) in [0, 1], white digit on black, or ``NoDigitError``;
3. ``segment_digits``: the same for each digit of a multi-digit number, left to right.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from digits import DigitsError

#: Largest decoded image accepted, checked from the header before any pixel is decoded: a 12 MP
#: phone photo passes, a decompression bomb (a few KB that decode to gigabytes) does not.
MAX_PIXELS = 25_000_000
#: Images are reduced to this longer side before normalising: plenty for a digit, bounded work.
WORK_SIDE = 1024
#: The formats a browser or a phone produces; the rest of Pillow's decoders are attack surface.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
#: A multi-digit image with more separate marks than this is noise, not a number.
MAX_DIGITS = 20

# How far ink and paper must differ (on a 0-1 scale) for the image to hold anything at all.
_MIN_CONTRAST = 0.15
# Marks smaller than this fraction of the largest mark are specks of dust or noise.
_MIN_MARK_FRACTION = 0.08
# Mean stroke width of MNIST digits, in pixels of the 20-pixel box; thinner strokes are thickened.
_MNIST_STROKE = 2.3
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class ImageError(DigitsError):
    """An input is not a usable image; the message says why and ``code`` names the reason."""

    def __init__(self, message: str, code: str = "bad_image"):
        super().__init__(message)
        self.code = code


class NoDigitError(ImageError):
    """The image decoded fine but holds no digit (blank, empty, or only noise)."""

    def __init__(self, message: str = "no digit found: the image is blank or has too little contrast"):
        super().__init__(message, "no_digit")


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: grayscale pixels (0 black, 1 white, longer side at most ``WORK_SIDE``)."""

    gray: np.ndarray
    width: int
    height: int
    format: str

    @property
    def scale(self) -> float:
        """Original pixels per pixel of ``gray``."""
        return self.width / self.gray.shape[1]


@dataclass(frozen=True)
class DigitCrop:
    """One digit of a number: its model input and its box ``(x, y, width, height)`` in the input's pixels."""

    image: np.ndarray
    box: tuple[int, int, int, int]


# ---------------------------------------------------------------------------- decoding


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode untrusted image bytes into grayscale, or raise ``ImageError`` (never anything else).

    Accepts PNG, JPEG, GIF, BMP, WebP and TIFF with one frame; refuses animations and multi-page
    files, images over ``max_pixels`` and truncated files. 16-bit images are scaled to [0, 1];
    transparent ones are composited onto paper; EXIF rotation is applied.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ImageError("the file is empty", "empty")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        raise ImageError("the image has too many pixels (a decompression bomb?)", "too_large") from None
    except UnidentifiedImageError:
        raise ImageError(f"not an image: expected one of {', '.join(FORMATS)}", "not_an_image") from None
    except Exception as exc:  # noqa: BLE001 - a malformed header can raise almost anything
        raise ImageError(f"not a readable image ({exc})", "not_an_image") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(
                f"the image is {width}x{height} pixels; at most {max_pixels:,} pixels are accepted",
                "too_large",
            )
        if width < 1 or height < 1:
            raise ImageError("the image has no pixels", "not_an_image")
        fmt = image.format or "unknown"
        try:
            if getattr(image, "n_frames", 1) > 1:
                raise ImageError(
                    "animated and multi-page images are not accepted: send a single frame", "animated"
                )
            if fmt == "JPEG":
                # Decode big JPEGs at a reduced scale straight away: much faster, same result.
                image.draft(image.mode, (WORK_SIDE, WORK_SIDE))
            image.load()
            image = ImageOps.exif_transpose(image)
            gray = _to_gray(image)
        except ImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on bad data
            if "truncated" in str(exc) or isinstance(exc, EOFError):
                raise ImageError("the image file is truncated", "truncated") from None
            raise ImageError(f"the image could not be decoded ({exc})", "not_an_image") from None
    return DecodedImage(gray, width, height, fmt)


def _to_gray(image) -> np.ndarray:
    """A loaded Pillow image of any mode -> float32 grayscale in [0, 1], reduced to ``WORK_SIDE``."""
    from PIL import Image

    mode = image.mode
    if mode.startswith("I") or mode == "F":
        # 16-bit and 32-bit images: scale by the range their values actually use (8 or 16 bit).
        values = np.asarray(image, dtype=np.float32)
        top = 1.0 if mode == "F" and values.max() <= 1.0 else 255.0 if values.max() <= 255 else 65535.0
        gray = np.clip(values / top, 0.0, 1.0)
        return _reduce(Image.fromarray(gray, "F"))
    if "A" in mode or "a" in mode or "transparency" in image.info:
        return _composite(image.convert("RGBA").convert("LA"))
    try:
        luminance = image.convert("L")
    except ValueError as exc:
        raise ImageError(f"unsupported colour mode {mode}", "unsupported_mode") from exc
    return _reduce(luminance)


def _composite(image) -> np.ndarray:
    """Flatten a transparent image onto paper of the colour that makes its visible marks stand out."""
    factor = _factor(image.size)
    if factor > 1:
        image = image.reduce(factor)
    la = np.asarray(image, dtype=np.float32)
    luminance, alpha = la[..., 0] / 255.0, la[..., 1] / 255.0
    visible = alpha > 0.5
    # Mostly transparent: the visible part is the ink. Light ink goes on black, dark ink on white.
    # Mostly opaque: an ordinary picture with an alpha channel, so the usual white backing.
    paper = 1.0
    if visible.mean() < 0.5 and visible.any() and luminance[visible].mean() > 0.5:
        paper = 0.0
    return (luminance * alpha + paper * (1.0 - alpha)).astype(np.float32)


def _factor(size: tuple[int, int]) -> int:
    return -(-max(size) // WORK_SIDE)


def _reduce(image) -> np.ndarray:
    """Box-average a single-channel image down to ``WORK_SIDE``; return it as float32 in [0, 1]."""
    factor = _factor(image.size)
    if factor > 1:
        image = image.reduce(factor)
    gray = np.asarray(image, dtype=np.float32)
    return gray if image.mode == "F" else gray / 255.0


# ---------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class _Ink:
    """Where the ink is: ink strength (0 paper .. 1 ink), the labelled components, the kept ones."""

    strength: np.ndarray
    labels: np.ndarray
    marks: list[int]
    slices: list[tuple[slice, slice]]


def _find_ink(gray: np.ndarray) -> _Ink:
    """Fix polarity, denoise, threshold and find the marks (connected components) that are not specks."""
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or min(gray.shape) < 2:
        raise NoDigitError("no digit found: the image is too small")
    if min(gray.shape) >= 64:
        # Large photos and scans carry sensor and JPEG noise; a light blur removes it before thresholding.
        gray = ndimage.gaussian_filter(gray, 1.0)
    light = gray > _otsu(gray)
    # Polarity: the paper is whatever most of the border is. MNIST wants light ink on black.
    border = np.concatenate([light[0], light[-1], light[1:-1, 0], light[1:-1, -1]])
    if border.mean() > 0.5:
        ink, mask = 1.0 - gray, ~light
    else:
        ink, mask = gray, light
    if mask.all() or not mask.any():
        raise NoDigitError()
    paper, full = float(ink[~mask].mean()), float(np.median(ink[mask]))
    if full - paper < _MIN_CONTRAST:
        raise NoDigitError()
    strength = np.clip((ink - paper) / (full - paper), 0.0, 1.0)

    labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    areas[0] = 0
    marks = [int(i) for i in np.flatnonzero(areas >= _MIN_MARK_FRACTION * areas.max())]
    if not marks:
        raise NoDigitError()
    slices = ndimage.find_objects(labels)
    return _Ink(strength, labels, marks, [slices[i - 1] for i in marks])


def _otsu(gray: np.ndarray) -> float:
    """Otsu's threshold: the grey level that best splits the pixels into two classes."""
    hist, edges = np.histogram(gray, bins=256, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    levels = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)
    total = weight[-1]
    mean = np.cumsum(hist * levels)
    between = (mean[-1] * weight - mean * total) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        between /= weight * (total - weight)
    between = np.nan_to_num(between, nan=0.0, posinf=0.0)
    return float(levels[int(np.argmax(between))])


def _union(slices: list[tuple[slice, slice]]) -> tuple[slice, slice]:
    return (
        slice(min(s[0].start for s in slices), max(s[0].stop for s in slices)),
        slice(min(s[1].start for s in slices), max(s[1].stop for s in slices)),
    )


def _to_mnist(ink: _Ink, marks: list[int], box: tuple[slice, slice]) -> np.ndarray:
    """Crop the given marks, scale the longer side to 20 px, centre by mass in 28x28 (MNIST's recipe)."""
    from PIL import Image

    rows, cols = box
    # A one-pixel margin keeps the anti-aliased edges of the strokes.
    rows = slice(max(rows.start - 1, 0), rows.stop + 1)
    cols = slice(max(cols.start - 1, 0), cols.stop + 1)
    own = np.isin(ink.labels[rows, cols], marks)
    near = ndimage.binary_dilation(own, structure=_EIGHT_CONNECTED)
    crop = np.where(near, ink.strength[rows, cols], 0.0).astype(np.float32)

    inner_h, inner_w = box[0].stop - box[0].start, box[1].stop - box[1].start
    scale = 20.0 / max(inner_h, inner_w)
    # Stroke width ~ 2 x area / perimeter. Thin pen strokes in a big photo would shrink to a faint
    # hairline at 20 px, unlike anything in MNIST: thicken them to MNIST's typical width first.
    perimeter = np.count_nonzero(own & ~ndimage.binary_erosion(own, structure=_EIGHT_CONNECTED))
    stroke = 2.0 * np.count_nonzero(own) / max(perimeter, 1)
    if stroke * scale < 0.6 * _MNIST_STROKE:
        grow = (_MNIST_STROKE / scale - stroke) / 2
        own = ndimage.distance_transform_edt(~own) <= grow
        crop = np.maximum(crop, own.astype(np.float32))

    height = max(1, round(crop.shape[0] * scale))
    width = max(1, round(crop.shape[1] * scale))
    shrinking = scale < 1
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    small = np.asarray(Image.fromarray(crop, "F").resize((width, height), resample), dtype=np.float32)
    small = np.clip(small, 0.0, 1.0)
    if small.max() > 0:
        small /= small.max()
    height, width = min(height, 28), min(width, 28)
    small = small[:height, :width]

    centre_y, centre_x = ndimage.center_of_mass(small)
    if not np.isfinite(centre_y):
        raise NoDigitError()
    # MNIST's centres of mass sit at (14, 14) in pixel-index coordinates.
    top = int(np.clip(round(14 - centre_y), 0, 28 - height))
    left = int(np.clip(round(14 - centre_x), 0, 28 - width))
    out = np.zeros((28, 28), dtype=np.float32)
    out[top : top + height, left : left + width] = small
    # MNIST pixels are bytes; quantising makes the array exactly what a 28x28 8-bit image can show.
    return np.round(out * 255) / np.float32(255)


def normalise(gray: np.ndarray) -> np.ndarray:
    """An arbitrary grayscale image (0 black .. 1 white, either polarity) -> MNIST-style (28, 28).

    Fixes polarity, removes noise and specks, crops to the ink, scales the longer side to 20 pixels
    keeping the aspect ratio, and centres the centre of mass in the 28x28 field. Raises
    ``NoDigitError`` for a blank image.
    """
    ink = _find_ink(gray)
    return _to_mnist(ink, ink.marks, _union(ink.slices))


def segment_digits(gray: np.ndarray, max_digits: int = MAX_DIGITS) -> list[DigitCrop]:
    """The digits of a multi-digit number, left to right, each normalised like ``normalise``.

    Each connected mark is a digit, except that marks stacked in the same column (a detached stroke,
    the top bar of a 5) are one digit. Touching digits are read as one.
    """
    ink = _find_ink(gray)
    order = sorted(range(len(ink.marks)), key=lambda i: ink.slices[i][1].start)
    groups: list[list[int]] = []
    for i in order:
        cols = ink.slices[i][1]
        if groups:
            last = _union([ink.slices[j] for j in groups[-1]])[1]
            overlap = min(cols.stop, last.stop) - max(cols.start, last.start)
            if overlap >= 0.5 * min(cols.stop - cols.start, last.stop - last.start):
                groups[-1].append(i)
                continue
        groups.append([i])
    if len(groups) > max_digits:
        raise ImageError(
            f"found {len(groups)} separate marks; at most {max_digits} digits can be read", "too_many_digits"
        )
    crops = []
    for group in groups:
        rows, cols = _union([ink.slices[j] for j in group])
        image = _to_mnist(ink, [ink.marks[j] for j in group], (rows, cols))
        crops.append(
            DigitCrop(image, (cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start))
        )
    return crops


# ---------------------------------------------------------------------------- files


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file (or a 28x28 ``.npy`` array) as a normalised 28x28 MNIST-style image.

    Image files go through ``decode_image`` and ``normalise``; a ``.npy`` array is taken to be
    MNIST-style already and is only scaled to [0, 1].
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file", "missing")
    if path.suffix.lower() == ".npy":
        return _from_array(path)
    try:
        return normalise(decode_image(path.read_bytes(), max_pixels).gray)
    except ImageError as exc:
        exc.args = (f"{path}: {exc}",)
        raise


def _from_array(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable .npy array ({exc})") from None
    array = np.squeeze(array)
    if array.shape != (28, 28) or not np.issubdtype(array.dtype, np.number):
        raise ImageError(f"{path}: expected a numeric 28x28 array, got {array.dtype} {array.shape}")
    array = array.astype(np.float32)
    return array / 255.0 if array.max() > 1.0 else array
