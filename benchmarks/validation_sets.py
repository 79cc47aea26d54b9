"""The real-world benchmark's kinds of image, built from MNIST *validation* digits: for design choices.

The real-world sets only measure; preprocessing, segmentation and the choice between trained models
are decided here instead, on images of the 5,000 validation digits (the split every run holds out),
read through the app's own endpoints like the benchmark's:

* ``low-resolution``: each digit reduced to 8 pixels a side (box filter, aspect ratio kept), enlarged
  3-8x (bicubic) and printed dark on noisy paper as a JPEG: a low-resolution scan;
* ``thick-pen``: each digit's strokes thickened 1-2.5 px (a felt pen or a marker at MNIST's scale),
  then scanned as ``low-resolution``: strokes that fill whole pixels of the 8x8 scan;
* ``photographed``: photos as ``digits.realworld.photo_of`` takes them, all unevenly lit;
* ``numbers``: numbers of 2-6 digits as ``digits.realworld.numbers`` writes them;
* ``thick-numbers``: the same, from digits thickened as for ``thick-pen``: a number in a marker;
* ``marker-photos``: the ``thick-pen`` digits photographed as ``photographed``, 8-36 times MNIST's
  scale: a phone photo of a marker's digit, whose crop is bigger than the reader's working size;
* ``lined-paper``: photos as ``digits.realworld.on_paper`` takes them: on ruled paper, on squared
  paper and in a box, a third each;
* ``on-a-desk``: photos as ``digits.realworld.on_a_desk`` takes them: on a sheet of paper lying on a
  darker desk, which shows all round the sheet or beyond some of the photo's edges;
* ``from-afar``: photos as ``digits.realworld.from_afar`` takes them: a digit written small on a big
  sheet, 2-6% of the photo's width;
* ``numbers-from-afar``: numbers as ``digits.realworld.numbers_from_afar`` takes them: written small
  on a big sheet, each digit's box 2-6% of the photo's width;
* ``negatives``: non-digits the served model never trained on, to see what a reading change costs
  in non-digits read as digits: half Fashion-MNIST *training* items outside those its training drew,
  half letters and marks drawn as ``digits.negatives`` draws them, from a seed of their own;
* ``negatives-as-numbers``: the same non-digits read by ``/api/predict-number``, which should
  answer "not a number".

    python benchmarks/validation_sets.py [--model DIR] [--count N] [--sets NAME ...] [--seed N]
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from digits import realworld as sets
from digits.realworld_benchmark import read_uploads, score

#: The sets, built in this order (so that each set's images stay the same whichever are read).
SETS = (
    "low-resolution",
    "photographed",
    "numbers",
    "thick-pen",
    "thick-numbers",
    "marker-photos",
    "lined-paper",
    "on-a-desk",
    "from-afar",
    "numbers-from-afar",
    "negatives",
    "negatives-as-numbers",
)


def low_resolution_scan(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A 28x28 uint8 MNIST digit reduced to 8x8 (aspect ratio kept), as a JPEG scan of it."""
    ink = digit.astype(np.float32) / 255
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0.1), np.flatnonzero(ink.max(axis=0) > 0.1)
    crop = Image.fromarray(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], "F")
    scale = 8 / max(crop.size)
    small = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.BOX)
    low = np.zeros((8, 8), dtype=np.float32)
    top, left = (8 - small.height) // 2, (8 - small.width) // 2
    low[top : top + small.height, left : left + small.width] = np.asarray(small)
    return sets.low_resolution_scan(low, rng)


def thick_pen(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 uint8 MNIST digit written with a thicker pen: its strokes grown by 1-2.5 px each side
    (a grey dilation with a disk, at 4x the resolution so the growth need not be whole pixels)."""
    from scipy import ndimage

    big = np.asarray(Image.fromarray(digit).resize((112, 112), Image.Resampling.BILINEAR))
    radius = 4 * rng.uniform(1.0, 2.5)
    reach = int(np.ceil(radius))
    y, x = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    grown = ndimage.grey_dilation(big, footprint=x**2 + y**2 <= radius**2)
    return np.asarray(Image.fromarray(grown).resize((28, 28), Image.Resampling.BOX))


def unseen_negatives(count: int, model: str | None, seed: int = 7) -> list[sets.Sample]:
    """``count`` non-digits ``model`` never trained on (see the module's docstring), as PNGs, drawn
    with ``seed``."""
    from digits import negatives, runs
    from digits.data import load_fashion
    from digits.inference import resolve_model_path

    fashion = load_fashion("train")
    if fashion is None:
        raise SystemExit("the negatives set needs Fashion-MNIST: apt-get install dataset-fashion-mnist")
    path = resolve_model_path(model)
    config = runs.read_config(path if path.is_dir() else path.parent)
    if config is None or not config.settings.get("negatives"):
        raise SystemExit(f"{path}: not a run trained with negatives, so the negatives set says nothing")
    drawn = negatives.fashion_items_drawn(config.settings["negatives"], config.settings["seed"], len(fashion))
    rng = np.random.default_rng(seed)
    unseen = np.setdiff1d(np.arange(len(fashion)), drawn)
    images = [Image.fromarray(fashion[i]) for i in rng.choice(unseen, count // 2, replace=False)]
    while len(images) < count:
        images.append(negatives.drawn_letter(rng) if len(images) % 2 else negatives.random_marks(rng))
    return [sets.Sample(sets.png(image), "", "negative") for image in images]


def main() -> None:
    from fastapi.testclient import TestClient

    from digits.data import prepare
    from digits.server import create_app

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="run folder or model file (default: the served model)")
    parser.add_argument("--count", type=int, default=1000, help="images per set (default: 1000)")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=SETS, help="sets to read (default: all)")
    parser.add_argument(
        "--seed", type=int, default=2026, help="the images' seed: a new one for a new plan's measurement"
    )
    args = parser.parse_args()
    if not 2 <= args.count <= 5000:  # numbers take half as many; validation holds 5,000 digits
        parser.error(f"--count must be between 2 and 5000, got {args.count}")
    data = prepare(val_size=5000, seed=0)  # the split every run holds out
    digits, labels = (data.x_val[..., 0] * 255).round().astype(np.uint8), data.y_val
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(labels), args.count, replace=False)
    built = {
        "low-resolution": [
            sets.Sample(low_resolution_scan(digits[i], rng), str(labels[i]), "scan") for i in pick
        ],
        "photographed": [
            sets.Sample(sets.photo_of(digits[i], rng, uneven_light=True), str(labels[i]), "photo")
            for i in pick
        ],
        "numbers": sets.numbers(digits, labels, rng, args.count // 2),
        # Last, so that the sets above are the same images as before it was added.
        "thick-pen": [
            sets.Sample(low_resolution_scan(thick_pen(digits[i], rng), rng), str(labels[i]), "scan")
            for i in pick
        ],
    }
    thick = np.stack([thick_pen(digits[i], rng) for i in pick])
    built["thick-numbers"] = sets.numbers(thick, labels[pick], rng, args.count // 2)
    built["marker-photos"] = [
        sets.Sample(sets.photo_of(thick[n], rng, uneven_light=True, scale=(8, 36)), str(labels[i]), "photo")
        for n, i in enumerate(pick)
    ]
    built["lined-paper"] = [
        sets.Sample(sets.on_paper(digits[i], rng, sets.PAPERS[n % 3]), str(labels[i]), sets.PAPERS[n % 3])
        for n, i in enumerate(pick)
    ]
    if "on-a-desk" in args.sets:  # the last set drawn from ``rng``: left out, it changes no other
        built["on-a-desk"] = [
            sets.Sample(sets.on_a_desk(digits[i], rng), str(labels[i]), "on-a-desk") for i in pick
        ]
    if "from-afar" in args.sets:  # a generator of its own: built or not, no other set's images change
        afar = np.random.default_rng([args.seed, 1])
        built["from-afar"] = [
            sets.Sample(sets.from_afar(digits[i], afar), str(labels[i]), "from-afar") for i in pick
        ]
    if "numbers-from-afar" in args.sets:  # a generator of its own, as for from-afar
        built["numbers-from-afar"] = sets.numbers_from_afar(
            digits, labels, np.random.default_rng([args.seed, 2]), args.count // 2
        )
    if {"negatives", "negatives-as-numbers"} & set(args.sets):
        # The default seed's negatives are the ones every earlier measurement read.
        built["negatives"] = unseen_negatives(args.count, args.model, 7 if args.seed == 2026 else args.seed)
        built["negatives-as-numbers"] = built["negatives"]
    with TestClient(create_app(args.model)) as client:
        print(f"model: {client.get('/api/model').json()['name']}")
        for name, samples in built.items():
            if name not in args.sets:
                continue
            answers = read_uploads(client, samples, number="numbers" in name, log=lambda _: None)
            row = score(name, answers, 0.0)
            extra = "  errors " + ", ".join(f"{k} ({n})" for k, n in row["confusions"])
            kinds = {k: [a.right for a in answers if a.kind == k] for k in ("touching", "apart")}
            if any(kinds.values()):
                extra = "  (" + ", ".join(f"{k} {np.mean(v):.2%}" for k, v in kinds.items() if v) + ")"
            print(
                f"{name:<15} {row['images']:>5} images  read right {row['accuracy']:.2%}"
                f"  not a digit {row['not_a_digit']:.2%}  ECE {row['ece']:.2%}{extra}"
            )


if __name__ == "__main__":
    main()
