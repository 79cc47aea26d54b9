"""How strong may elastic distortion be before digits stop looking like their labels?

Trained models read the first N training images of the split clean, after affine distortion, after
elastic distortion at several strengths (alpha), and after both. A distortion that a good model can no
longer read has, in effect, relabelled the digit; training on it teaches the wrong thing. Training
images only: the test set plays no part in choosing the strength.

    PYTHONPATH=src DIGITS_DATA_DIR=../shared/data/mnist python benchmarks/elastic_strength.py \\
        --models runs/deep-cnn-seed1 runs/deep-cnn-seed5
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> int:
    """Read distorted training images with the given models and print the share still read right."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="run folders of trained models")
    parser.add_argument("-n", type=int, default=8192, help="training images to distort (default 8192)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[12, 17, 24, 34])
    parser.add_argument("--sigma", type=float, default=4.0, help="smoothness in pixels (default 4)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"-n must be at least 1, got {args.n}")

    from digits import DigitsError
    from digits import data as mnist
    from digits.augmentation import ElasticDistortion, augmentation
    from digits.inference import load_classifier

    try:
        data = mnist.prepare(None)
        readers = [load_classifier(path) for path in args.models]
    except (OSError, DigitsError) as exc:
        parser.error(str(exc))
    x, y = data.x_train[: args.n], data.y_train[: args.n]

    def read(distort=None) -> float:
        """Mean share of the images the models read as their label, after ``distort`` in batches of 128."""
        images = x
        if distort is not None:
            images = np.concatenate([distort(x[i : i + 128]) for i in range(0, len(x), 128)])
        return float(np.mean([np.mean(m.predict_proba(images).argmax(axis=1) == y) for m in readers]))

    def distortion(alpha: float | None, with_affine: bool):
        """A batch function with freshly seeded layers, so every row sees the same random draws."""
        steps = [augmentation("affine", seed=0)] if with_affine else []
        if alpha is not None:
            steps.append(ElasticDistortion(alpha=alpha, sigma=args.sigma, seed=3))

        def distort(batch):
            for step in steps:
                batch = step(batch, training=True)
            return np.asarray(batch)

        return distort

    print(f"{len(x)} training images, read by {len(readers)} model(s)")
    print(f"clean                   {read():.2%}")
    print(f"affine                  {read(distortion(None, with_affine=True)):.2%}")
    for alpha in args.alphas:
        alone = read(distortion(alpha, with_affine=False))
        both = read(distortion(alpha, with_affine=True))
        print(f"elastic alpha {alpha:<5g}     {alone:.2%}   with affine {both:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
