"""Measure ``preprocess.LONGEST_DIGIT_INK``: how long a pen path a digit traces in a model input.

The reader answers "not a digit" for an input that traces more ink than this (a scribble, a spiral,
a crossing-out), whatever the model reads in it. The value is the 99.9th percentile of
``ink_length`` over MNIST's 5,000 validation digits and their copies distorted by the handwriting
augmentation (the images calibration fits on); it goes into ``digits/preprocess.py`` by hand, as a
reviewed change. Needs the training extra (the augmentation runs on Keras).

    python benchmarks/ink_length.py
"""

from __future__ import annotations

import numpy as np

from digits.augmentation import augmentation
from digits.data import prepare
from digits.preprocess import LONGEST_DIGIT_INK, ink_length


def main() -> None:
    data = prepare(val_size=5000, seed=0)  # the split every run holds out
    distorted = np.asarray(augmentation("handwriting", 0)(data.x_val, training=True))
    clean = np.array([ink_length(image) for image in data.x_val])
    lengths = np.concatenate([clean, [ink_length(image) for image in distorted]])
    print(f"ink length of validation digits and distorted copies: median {np.median(lengths):.1f},")
    print(f"99th percentile {np.percentile(lengths, 99):.1f}, 99.9th {np.percentile(lengths, 99.9):.1f}")
    print(f"max {lengths.max():.1f}; LONGEST_DIGIT_INK is {LONGEST_DIGIT_INK}, which")
    print(f"{np.mean(clean > LONGEST_DIGIT_INK):.2%} of the clean validation digits exceed")


if __name__ == "__main__":
    main()
