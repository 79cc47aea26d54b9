"""Decoding untrusted image bytes safely: size limits checked before decoding, one frame only, every
Pillow failure turned into an ``ImageError``; the result is uint8 grayscale, reduced to a working size."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

from digits import DigitsError

#: Largest decoded image accepted, checked from the header before any pixel is decoded: a 12 MP
#: phone photo passes, a decompression bomb (a few KB that decode to gigabytes) does not.
MAX_PIXELS = 25_000_000
#: Images are reduced to this longer side before normalising: plenty for a digit, bounded work.
WORK_SIDE = 1024
#: A 16- or 32-bit pixel costs about this many 8-bit pixels' memory and time to decode and convert,
#: so such images may have only ``max_pixels / DEEP_COST`` pixels (a 60 kB 16-bit PNG of 25 megapixels
#: would otherwise cost a second of CPU and most of a gigabyte).
DEEP_COST = 4
#: The formats a browser or a phone produces; the rest of Pillow's decoders are attack surface.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
#: ``load_image`` reads local files up to this size: a 108-megapixel phone photo fits.
FILE_MAX_PIXELS = 120_000_000


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
    """A decoded image: uint8 grayscale pixels, longer side reduced to at most ``WORK_SIDE``."""

    gray: np.ndarray
    width: int
    height: int
    format: str

    @property
    def scale(self) -> float:
        """Original pixels per pixel of ``gray``."""
        return self.width / self.gray.shape[1]


# ---------------------------------------------------------------------------- decoding


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode untrusted image bytes into grayscale, or raise ``ImageError`` (never anything else).

    Accepts PNG, JPEG, GIF, BMP, WebP and TIFF with one frame; refuses animations and multi-page
    files, images over ``max_pixels`` and truncated files. 16- and 32-bit images are scaled to 0-255
    by the range their values use; transparent ones are composited onto paper; EXIF rotation is applied.
    """
    from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ImageError("the file is empty", "empty")
    try:
        image = _open(data)
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
        if _is_deep(image.mode) and width * height > max_pixels // DEEP_COST:
            raise ImageError(
                f"the image is {width}x{height} pixels of 16 or 32 bits; at most"
                f" {max_pixels // DEEP_COST:,} such pixels are accepted",
                "too_large",
            )
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
            if image.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8):
                width, height = height, width  # a quarter turn: boxes are reported upright
            ImageOps.exif_transpose(image, in_place=True)  # phones record rotation in EXIF
            gray = _to_gray(image)
        except ImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on bad data
            if "truncated" in str(exc) or isinstance(exc, EOFError):
                raise ImageError("the image file is truncated", "truncated") from None
            raise ImageError(f"the image could not be decoded ({exc})", "not_an_image") from None
    return DecodedImage(gray, width, height, fmt)


def peek_pixels(data: bytes) -> int:
    """The pixel count an image's header declares (0 if it has no readable header); decodes nothing."""
    try:
        with _open(data) as image:
            return image.width * image.height
    except Exception:  # noqa: BLE001 - decode_image will say what is wrong with it
        return 0


def _open(data: bytes):
    """Pillow's lazy open of an accepted format: reads the header, decodes nothing."""
    from PIL import Image

    with warnings.catch_warnings():
        # Pillow warns from 89M pixels; MAX_PIXELS is far smaller and decode_image refuses such images.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=FORMATS)


def _is_deep(mode: str) -> bool:
    """16- and 32-bit integer modes and floating point: decoded at several bytes a pixel."""
    return mode.startswith("I") or mode == "F"


def _to_gray(image) -> np.ndarray:
    """A loaded Pillow image of any mode -> uint8 grayscale, reduced to ``WORK_SIDE``."""
    from PIL import Image

    mode = image.mode
    if _is_deep(mode):
        # 16-bit and 32-bit images: scale by the range their values actually use (8 or 16 bit).
        values = np.asarray(image, dtype=np.float32)
        top = 1.0 if mode == "F" and values.max() <= 1.0 else 255.0 if values.max() <= 255 else 65535.0
        gray = np.clip(values * (255.0 / top), 0.0, 255.0).round().astype(np.uint8)
        return _reduce(Image.fromarray(gray, "L"))
    if "A" in mode or "a" in mode or "transparency" in image.info:
        return _composite(image if mode in ("RGBA", "LA") else image.convert("RGBA"))
    try:
        luminance = image.convert("L")
    except ValueError as exc:
        raise ImageError(f"unsupported colour mode {mode}", "unsupported_mode") from exc
    return _reduce(luminance)


def _composite(image) -> np.ndarray:
    """Flatten an RGBA or LA image onto paper of the colour that makes its visible marks stand out."""
    if image.getchannel("A").getextrema()[0] == 255:
        # Fully opaque, like every PNG a browser canvas makes: the alpha channel changes nothing.
        return _reduce(image.convert("L"))
    image = image.convert("LA") if image.mode != "LA" else image
    factor = reduction_factor(image.size)
    if factor > 1:
        image = image.reduce(factor)
    la = np.asarray(image, dtype=np.float32) / 255.0
    luminance, alpha = la[..., 0], la[..., 1]
    visible = alpha > 0.5
    # Mostly transparent: the visible part is the ink. Light ink goes on black, dark ink on white.
    # Mostly opaque: an ordinary picture with an alpha channel, so the usual white backing.
    paper = 1.0
    if visible.mean() < 0.5 and visible.any() and luminance[visible].mean() > 0.5:
        paper = 0.0
    return np.round((luminance * alpha + paper * (1.0 - alpha)) * 255).astype(np.uint8)


def reduction_factor(size: tuple[int, ...], side: int = WORK_SIDE) -> int:
    """The smallest integer reduction that brings the longer side down to ``side``."""
    return -(-max(size) // side)


def _reduce(image) -> np.ndarray:
    """Box-average a Pillow image down to ``WORK_SIDE`` (its longer side) and return its pixels."""
    factor = reduction_factor(image.size)
    return np.asarray(image.reduce(factor) if factor > 1 else image)
