"""Images the way strangers send them: the independent sets of the real-world benchmark.

None of these images is an MNIST training image, and none of them trains or tunes a model: they
only measure. Each builder returns ``Sample``s holding the bytes of an image file, as a user would
upload it, and its label (a digit, a number, or ``""`` for "not a digit"):

* ``other_writers``: scikit-learn's ``load_digits`` (the UCI optdigits set: 1,797 digits by writers
  who are not MNIST's, 8x8) rendered as low-resolution scans: dark ink on paper, upscaled, noise, JPEG;
* ``photographed``: MNIST *test* digits as phone photos: big, dark on light, askew, off-centre, JPEG;
* ``lined_paper``: MNIST test digits photographed as written on ruled or squared paper, or in a box;
* ``photos`` of ``on_a_desk``: MNIST test digits written on a sheet of paper photographed lying on a
  darker desk; of ``from_afar``: written small on a big sheet and photographed whole, from afar;
* ``numbers``: MNIST test digits written side by side as numbers of 2-6 digits, neighbours sometimes
  touching; ``numbers_from_afar``: such numbers written small on a big sheet, photographed whole;
* ``not_digits``: Fashion-MNIST *test* items, printed letters, scribbles and blank-ish paper;
* ``digits.strokes.drawn_digits``: stroke paths for the page's canvas (varied shape, width, size,
  position, slant), drawn in a real browser by ``digits.realworld_benchmark``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digits.data import load_fashion

#: Printed letters that look like no digit: O, I, l, S, Z, B, G, T, J, b, g, q, t and their kin are
#: left out. ``digits.negatives`` draws the same letters for training.
LETTERS = "ACEFHKLMNPRUVWXYacdefhkmnpruvwxy"


@dataclass(frozen=True)
class Sample:
    """One image as a user would send it: the file's bytes, the true answer and what kind it is."""

    data: bytes
    label: str  # "7", "2024", or "" for an image that holds no digit
    kind: str


#: How a "not a digit" answer is written in confusions and reports.
NONE = "\u2205"


@dataclass
class Answer:
    """What the reader answered for one image."""

    label: str
    kind: str
    read: str  # the digit or number read, or NONE
    confidence: float | None  # None when preprocessing found no digit at all
    processed: list[np.ndarray] = field(default_factory=list)
    data: bytes = b""

    @property
    def right(self) -> bool:
        return self.read == (self.label or NONE)


def jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.convert("L").save(out, "JPEG", quality=quality)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _paper(size: tuple[int, int], rng: np.random.Generator, noise: float) -> np.ndarray:
    """Off-white paper with sensor noise, as a float array (height, width) in 0-255."""
    width, height = size
    level = rng.uniform(200, 250)
    return level + rng.normal(0, noise, (height, width))


def _ink_on_paper(ink: np.ndarray, rng: np.random.Generator, noise: float) -> Image.Image:
    """Ink strength (0..1, any size) printed dark on noisy paper, as an 8-bit image."""
    paper = _paper((ink.shape[1], ink.shape[0]), rng, noise)
    darkest = rng.uniform(10, 70)
    pixels = paper - ink * (paper - darkest)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------- other writers


def other_writers(rng: np.random.Generator, count: int | None = None) -> list[Sample]:
    """The optdigits test digits (8x8, 17 grey levels) as low-resolution scans of dark ink on paper
    (``low_resolution_scan``)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = rng.permutation(len(digits.target))[:count]
    return [
        Sample(low_resolution_scan(digits.images[i] / 16.0, rng), str(digits.target[i]), "optdigits")
        for i in order
    ]


def low_resolution_scan(ink: np.ndarray, rng: np.random.Generator) -> bytes:
    """Ink strength (0..1) of a small square image, such as 8x8, as a JPEG scan of it: upscaled 3-8 times
    (bicubic, as a scanner's driver would), placed with a margin, sensor noise, quality 40-90."""
    side = int(ink.shape[1] * rng.uniform(3, 8))
    pixels = (np.clip(ink, 0, 1) * 255).astype(np.uint8)
    big = Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC)
    margin = int(side * rng.uniform(0.1, 0.5))
    sheet = np.zeros((side + 2 * margin, side + 2 * margin))
    sheet[margin : margin + side, margin : margin + side] = np.asarray(big) / 255.0
    image = _ink_on_paper(sheet, rng, noise=rng.uniform(2, 8))
    return jpeg(image, int(rng.integers(40, 91)))


# ---------------------------------------------------------------------------- photographed


def photo_of(
    digit: np.ndarray,
    rng: np.random.Generator,
    uneven_light: bool = False,
    scale: tuple[float, float] = (3, 8),
) -> bytes:
    """A 28x28 uint8 MNIST digit as a JPEG a user might send: big (``scale`` times MNIST's, drawn
    uniformly), dark on light, askew, off-centre."""
    size = int(28 * rng.uniform(*scale))
    image = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BILINEAR)
    image = image.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BILINEAR, fillcolor=255, expand=True)
    width = int(image.width * rng.uniform(1.3, 2.5))
    height = int(image.height * rng.uniform(1.3, 2.5))
    sheet = Image.new("L", (width, height), int(rng.integers(215, 256)))  # paper is rarely pure white
    mask = Image.fromarray(np.asarray(image) < 250)
    corner = (int(rng.integers(0, width - image.width + 1)), int(rng.integers(0, height - image.height + 1)))
    sheet.paste(image, corner, mask)
    if uneven_light:
        sheet = Image.fromarray(np.clip(np.asarray(sheet) * light(sheet.size, rng), 0, 255).astype(np.uint8))
    return jpeg(sheet, int(rng.integers(30, 81)))


def light(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """How much of the light reaches each pixel of a (width, height) sheet: a vignette that darkens the
    corners by 20-50%, a shadow that darkens one corner by up to 60% over a third to a half of the sheet,
    or both."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    u, v = x / width, y / height  # 0..1 across the sheet
    kind = rng.integers(3)  # 0 vignette, 1 shadow, 2 both
    factor = np.ones((height, width))
    if kind in (0, 2):
        factor *= 1 - rng.uniform(0.2, 0.5) * (((u - 0.5) ** 2 + (v - 0.5) ** 2) / 0.5)
    if kind in (1, 2):
        u, v = (u if rng.integers(2) else 1 - u), (v if rng.integers(2) else 1 - v)  # which corner
        start, reach = rng.uniform(0.5, 0.67), rng.uniform(0.3, 0.5)
        ramp = np.clip((u - start) / reach, 0, 1) * np.clip((v - start) / reach, 0, 1)
        factor *= 1 - rng.uniform(0.2, 0.6) * ramp
    return factor


def photographed(
    x_test: np.ndarray, y_test: np.ndarray, rng: np.random.Generator, count: int
) -> list[Sample]:
    """MNIST test digits as photos, a third of them lit unevenly (a vignette or a shadow)."""
    pick = rng.choice(len(x_test), size=min(count, len(x_test)), replace=False)
    return [
        Sample(photo_of(x_test[i], rng, uneven_light=k % 3 == 2), str(y_test[i]), "mnist-test-photo")
        for k, i in enumerate(pick)
    ]


#: The paper a digit is written on in ``on_paper``.
PAPERS = ("ruled", "squared", "box")


def on_paper(digit: np.ndarray, rng: np.random.Generator, paper: str) -> bytes:
    """A 28x28 uint8 MNIST digit as a photo of it written in blue or black ink on a notebook's
    ``paper``: "ruled" (light lines across the page, some crossing the digit), "squared" (a grid)
    or "box" (inside a dark frame, as on a form), a little askew, as a JPEG."""
    size = int(28 * rng.uniform(3, 8))
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR)) / 255.0
    width, height = int(size * rng.uniform(1.4, 2.5)), int(size * rng.uniform(1.4, 2.5))
    level = rng.uniform(215, 250)
    sheet = Image.new("RGB", (width, height), (int(level),) * 3)
    draw = ImageDraw.Draw(sheet)
    left, top = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
    if paper in ("ruled", "squared"):
        colour = tuple(int(v) for v in rng.uniform((140, 165, 200), (200, 210, 245)))
        gap, line = size * rng.uniform(0.35, 0.8), max(1, round(size * rng.uniform(0.01, 0.025)))
        for y in np.arange(rng.uniform(0, gap), height, gap):
            draw.line([(0, y), (width, y)], fill=colour, width=line)
        for x in np.arange(rng.uniform(0, gap), width, gap) if paper == "squared" else []:
            draw.line([(x, 0), (x, height)], fill=colour, width=line)
    elif paper == "box":
        margin = size * rng.uniform(-0.08, 0.1)
        shade = int(rng.uniform(20, 90))
        box = [max(left - margin, 0), max(top - margin, 0)]
        box += [min(left + size + margin, width - 1), min(top + size + margin, height - 1)]
        draw.rectangle(box, outline=(shade,) * 3, width=max(1, round(size * rng.uniform(0.015, 0.04))))
    else:
        raise ValueError(f"unknown paper {paper!r}; choose from: {', '.join(PAPERS)}")
    pixels = _write(np.asarray(sheet, dtype=np.float64), ink, (top, left), rng)
    photo = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    photo = photo.rotate(rng.uniform(-6, 6), resample=Image.Resampling.BILINEAR, fillcolor=(int(level),) * 3)
    return jpeg(photo, int(rng.integers(30, 81)))


def _write(
    pixels: np.ndarray, ink: np.ndarray, corner: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """An RGB sheet's ``pixels`` (float) with ``ink`` (0..1) written on them at ``corner`` (top, left)
    in a blue or a black pen."""
    colour = rng.uniform((15, 20, 90), (40, 50, 160)) if rng.integers(2) else np.full(3, rng.uniform(15, 50))
    top, left = corner
    region = pixels[top : top + ink.shape[0], left : left + ink.shape[1]]
    region[:] = region * (1 - ink[..., None]) + colour * ink[..., None]
    return pixels


def on_a_desk(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A 28x28 uint8 MNIST digit as a photo of it written on a sheet of paper (a note, a page) lying
    on a darker desk, as a JPEG: the sheet is turned by up to 10 degrees and spans 55-130% of the
    frame's width and height, so the desk shows all round it, or beyond some of the photo's edges where
    the sheet runs off the others (now and then, not at all). The digit stays in the frame, but for a
    corner of its box now and then (about one photo in 700)."""
    size = int(28 * rng.uniform(3, 8))
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR)) / 255.0
    width, height = int(size * rng.uniform(1.6, 3.0)), int(size * rng.uniform(1.6, 3.0))
    paper = np.full((height, width, 3), rng.uniform(200, 250)) + rng.normal(0, 2, (height, width, 1))
    top = (height - size) // 2 + int(rng.integers(-size // 4, size // 4 + 1))
    left = (width - size) // 2 + int(rng.integers(-size // 4, size // 4 + 1))
    sheet = Image.fromarray(_write(paper, ink, (top, left), rng).clip(1, 255).astype(np.uint8))
    # Turned, with black corners: the mask that lays it on the desk leaves them out.
    sheet = sheet.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR, expand=True)
    covers = rng.uniform(0.55, 1.3)  # the sheet's share of the frame's width and height
    frame_w, frame_h = max(int(sheet.width / covers), size + 2), max(int(sheet.height / covers), size + 2)
    # A wooden or grey desk, darker than the paper, lit a little unevenly.
    tone = rng.uniform((0.9, 0.75, 0.55), (1.1, 1.0, 1.0)) * rng.uniform(35, 150)
    shade = np.linspace(1 - rng.uniform(0, 0.25), 1, frame_w)[None, :, None]
    desk = tone * shade + rng.normal(0, 6, (frame_h, frame_w, 1))
    photo = Image.fromarray(desk.clip(0, 255).astype(np.uint8))
    # Where the sheet goes: anywhere in the frame if it fits; if not, with its centre, near which the
    # digit is written, at least half the digit's box from the frame's edges.
    digit_x, digit_y = sheet.width // 2, sheet.height // 2
    x = int(rng.integers(min(0, frame_w - sheet.width), max(0, frame_w - sheet.width) + 1))
    y = int(rng.integers(min(0, frame_h - sheet.height), max(0, frame_h - sheet.height) + 1))
    x = int(np.clip(x, size // 2 - digit_x, frame_w - size // 2 - digit_x))
    y = int(np.clip(y, size // 2 - digit_y, frame_h - size // 2 - digit_y))
    photo.paste(sheet, (x, y), Image.fromarray(np.asarray(sheet).max(axis=2) > 0))
    return jpeg(photo, int(rng.integers(40, 86)))


def from_afar(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A 28x28 uint8 MNIST digit written small on a big sheet and photographed whole, from afar, as a
    JPEG: the photo is 1,280-2,560 pixels wide (4:3), the digit 2-6% of its width, in a blue or a black
    pen, on paper with a phone's sensor noise."""
    width = int(rng.integers(1280, 2561))
    size = int(width * rng.uniform(0.02, 0.06))
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR)) / 255.0
    return _photographed_from_afar(ink, width, rng)


def _photographed_from_afar(ink: np.ndarray, width: int, rng: np.random.Generator) -> bytes:
    """``ink`` (0..1) written anywhere on a sheet that fills a 4:3 photo ``width`` pixels wide, as a JPEG."""
    height = width * 3 // 4
    noise = rng.standard_normal((height, width), dtype=np.float32) * np.float32(rng.uniform(2, 6))
    paper = (np.float32(rng.uniform(190, 245)) + noise).clip(0, 255).astype(np.uint8)
    photo = Image.fromarray(paper).convert("RGB")
    rows, cols = ink.shape
    top, left = int(rng.integers(0, height - rows + 1)), int(rng.integers(0, width - cols + 1))
    box = (left, top, left + cols, top + rows)
    written = _write(np.asarray(photo.crop(box), dtype=np.float64), ink, (0, 0), rng)
    photo.paste(Image.fromarray(written.clip(0, 255).astype(np.uint8)), box)
    return jpeg(photo, int(rng.integers(60, 91)))


def photos(
    photo: Callable[[np.ndarray, np.random.Generator], bytes],
    kind: str,
    x_test: np.ndarray,
    y_test: np.ndarray,
    rng: np.random.Generator,
    count: int,
) -> list[Sample]:
    """``count`` MNIST test digits, each taken by ``photo`` (``on_a_desk``, ``from_afar``), of ``kind``."""
    pick = rng.choice(len(x_test), size=min(count, len(x_test)), replace=False)
    return [Sample(photo(x_test[i], rng), str(y_test[i]), kind) for i in pick]


def lined_paper(x_test: np.ndarray, y_test: np.ndarray, rng: np.random.Generator, count: int) -> list[Sample]:
    """MNIST test digits photographed on ruled paper, on squared paper and in a box, a third each."""
    pick = rng.choice(len(x_test), size=min(count, len(x_test)), replace=False)
    return [
        Sample(on_paper(x_test[i], rng, PAPERS[k % 3]), str(y_test[i]), PAPERS[k % 3])
        for k, i in enumerate(pick)
    ]


# ---------------------------------------------------------------------------- numbers


#: In a written number, the chance that a digit touches the one before it.
TOUCHING = 0.2


def numbers(x_test: np.ndarray, y_test: np.ndarray, rng: np.random.Generator, count: int) -> list[Sample]:
    """Numbers of 2-6 MNIST test digits written in a row (``_number``), neighbours touching now and
    then; each row is printed dark on paper, scaled 2-5 times and saved as JPEG. The kind says whether
    any neighbours touch."""
    samples = []
    for _ in range(count):
        row, label, touching = _number(x_test, y_test, rng)
        image = _ink_on_paper(_enlarged(row, rng.uniform(2, 5)), rng, noise=rng.uniform(2, 6))
        samples.append(
            Sample(jpeg(image, int(rng.integers(50, 91))), label, "touching" if touching else "apart")
        )
    return samples


def numbers_from_afar(
    x_test: np.ndarray, y_test: np.ndarray, rng: np.random.Generator, count: int
) -> list[Sample]:
    """Numbers of 2-6 MNIST test digits written in a row (``_number``) small on a big sheet and
    photographed whole, from afar, as ``from_afar`` takes one digit: each digit's 28-pixel box is 2-6%
    of the photo's width. The kind says whether any neighbours touch."""
    samples = []
    for _ in range(count):
        row, label, touching = _number(x_test, y_test, rng)
        width = int(rng.integers(1280, 2561))
        data = _photographed_from_afar(_enlarged(row, width * rng.uniform(0.02, 0.06) / 28), width, rng)
        samples.append(Sample(data, label, "touching" if touching else "apart"))
    return samples


def _number(x_test: np.ndarray, y_test: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str, bool]:
    """A number of 2-6 MNIST test digits written in a row at MNIST's scale: its ink (0..1, 40 pixels
    high), its label and whether any neighbours touch.

    Each digit is cut to its inked columns and set beside the last with a gap of 2 to 6 pixels, or,
    with the chance ``TOUCHING``, of -2 to 0 (the strokes touch or overlap), a little up or down.
    """
    length = int(rng.integers(2, 7))
    picks = rng.choice(len(x_test), size=length, replace=False)
    touching = False
    row = np.zeros((40, 34 * length + 20), dtype=np.float32)
    left = 10
    for n, i in enumerate(picks):
        digit = x_test[i].astype(np.float32) / 255.0
        cols = np.flatnonzero(digit.max(axis=0) > 0.1)
        digit = digit[:, cols[0] : cols[-1] + 1]
        if n:
            touches = rng.random() < TOUCHING
            touching |= touches
            left += int(rng.integers(-2, 1)) if touches else int(rng.integers(2, 7))
        top = 6 + int(rng.integers(-2, 3))
        region = row[top : top + 28, left : left + digit.shape[1]]
        np.maximum(region, digit, out=region)
        left += digit.shape[1]
    return row[:, : left + 10], "".join(str(y_test[i]) for i in picks), touching


def _enlarged(row: np.ndarray, scale: float) -> np.ndarray:
    """A number's ink (0..1, ``_number``) enlarged ``scale`` times, as 8-bit ink scaled back to 0..1."""
    size = (int(row.shape[1] * scale), int(row.shape[0] * scale))
    big = Image.fromarray((row * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(big) / 255.0


# ---------------------------------------------------------------------------- not digits


def _fonts() -> list[Path]:
    """TrueType fonts on this machine (Debian's DejaVu and Liberation, where installed)."""
    return sorted(Path("/usr/share/fonts").rglob("*.ttf"))[:40] if Path("/usr/share/fonts").is_dir() else []


def _letter(rng: np.random.Generator, fonts: list[Path]) -> Image.Image:
    """One printed letter, dark on paper, at a random size, angle and place."""
    size = int(rng.integers(40, 160))
    font_file = fonts[int(rng.integers(len(fonts)))] if fonts and rng.random() < 0.7 else None
    font = ImageFont.truetype(str(font_file), size) if font_file else ImageFont.load_default(size)
    letter = LETTERS[int(rng.integers(len(LETTERS)))]
    canvas = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(canvas).text((size // 2, size // 3), letter, fill=255, font=font)
    canvas = canvas.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR)
    return _ink_on_paper(np.asarray(canvas) / 255.0, rng, noise=rng.uniform(2, 6))


def _scribble(rng: np.random.Generator) -> Image.Image:
    """A random scrawl: a wandering pen line, a zigzag or a spiral."""
    side = int(rng.integers(150, 400))
    image = Image.new("L", (side, side), 0)
    pen = ImageDraw.Draw(image)
    width = int(rng.integers(2, max(3, side // 20)))
    kind = rng.integers(3)
    if kind == 0:  # a wandering line with momentum
        heading, point, points = rng.uniform(0, 2 * np.pi), np.array([side / 2, side / 2]), []
        for _ in range(int(rng.integers(30, 90))):
            heading += rng.normal(0, 0.5)
            point = np.clip(point + side / 25 * np.array([np.cos(heading), np.sin(heading)]), 5, side - 5)
            points.append(tuple(point))
    elif kind == 1:  # a zigzag, like crossing something out
        turns = int(rng.integers(4, 12))
        xs = np.linspace(0.15, 0.85, turns) * side
        ys = np.where(np.arange(turns) % 2, 0.25, 0.75) * side + rng.normal(0, side / 30, turns)
        points = list(zip(xs, ys, strict=True))
    else:  # a spiral
        t = np.linspace(0, rng.uniform(3, 6) * np.pi, 120)
        r = side * 0.4 * t / t[-1]
        points = list(zip(side / 2 + r * np.cos(t), side / 2 + r * np.sin(t), strict=True))
    pen.line(points, fill=255, width=width, joint="curve")
    return _ink_on_paper(np.asarray(image) / 255.0, rng, noise=rng.uniform(2, 6))


def _blank(rng: np.random.Generator) -> Image.Image:
    """Paper with nothing written on it: noise, a soft shadow, or a faint smudge."""
    width, height = int(rng.integers(100, 500)), int(rng.integers(100, 500))
    paper = _paper((width, height), rng, noise=rng.uniform(2, 12))
    y, x = np.mgrid[0:height, 0:width]
    if rng.random() < 0.5:  # a shadow across the sheet
        paper *= 1 - rng.uniform(0.1, 0.35) * (x / width if rng.random() < 0.5 else y / height)
    else:  # a faint smudge
        cy, cx, r = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width, rng.uniform(10, 60)
        paper -= rng.uniform(10, 30) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    return Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))


def not_digits(rng: np.random.Generator, count: int) -> list[Sample]:
    """Images that hold no digit: Fashion-MNIST test items photographed (half, where installed),
    printed letters, scribbles and blank-ish paper (the rest, in the ratio 3:2:1)."""
    fashion = load_fashion("t10k")
    samples = []
    fashion_count = count // 2 if fashion is not None else 0
    for i in rng.choice(len(fashion), fashion_count, replace=False) if fashion_count else []:
        samples.append(Sample(photo_of(fashion[i], rng), "", "fashion-mnist-test"))
    rest = count - fashion_count
    fonts = _fonts()
    for n in range(rest):
        share = n / rest
        if share < 0.5:
            samples.append(Sample(jpeg(_letter(rng, fonts), int(rng.integers(50, 91))), "", "letter"))
        elif share < 5 / 6:
            samples.append(Sample(jpeg(_scribble(rng), int(rng.integers(50, 91))), "", "scribble"))
        else:
            samples.append(Sample(jpeg(_blank(rng), int(rng.integers(50, 91))), "", "blank"))
    return samples
