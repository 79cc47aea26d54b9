"""Fit the number reader's ``MARK_SEGMENTED_RIGHT`` on numbers built from MNIST *validation* digits.

A number's confidence is the product of its digits' calibrated confidences times the chance that
each mark was segmented right (``digits.number_reader.whole_number``). That chance is fitted
here by log loss on 1,000 numbers of validation digits and checked on 1,000 others, read the way
``/api/predict-number`` reads them (segmentation, the model, "not a digit"). It prints the fitted
value and the calibration error before and after on both sets; the value goes into
``digits/number_reader.py`` by hand, as a reviewed change.

    python benchmarks/number_confidence.py [--model DIR] [--count N]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.optimize import minimize_scalar

from digits import realworld as sets
from digits.images import decode_image
from digits.inference import load_classifier, not_a_digit_below, reading, resolve_model_path
from digits.number_reader import (
    MARK_SEGMENTED_RIGHT,
    candidate_images,
    choose,
    look_again,
    pair_probabilities,
    whole_number,
)
from digits.pairs import PairModel
from digits.realworld_benchmark import expected_calibration_error
from digits.segmentation import segment_number


def read(classifier, pair_model, samples: list[sets.Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per number: the product of its digits' confidences (the confidence ``whole_number`` states,
    without the segmentation's share), its count of marks, whether it was read right."""
    below = not_a_digit_below(classifier)

    def predict(images: np.ndarray) -> np.ndarray:
        return classifier.predict_proba(images[..., np.newaxis])

    products, marks, right = [], [], []
    for sample in samples:
        candidates = segment_number(decode_image(sample.data).gray)  # the server's size limit
        probabilities = predict(candidate_images(candidates))
        candidates, probabilities = look_again(candidates, probabilities, predict, below)
        pairs, triples = pair_probabilities(candidates, probabilities, below, pair_model)
        chosen = choose(candidates, probabilities, below, pairs, triples)
        answers = [reading(row, below) for _, row in chosen]
        number, confidence = whole_number(answers)
        products.append(confidence / MARK_SEGMENTED_RIGHT ** len(answers))
        marks.append(len(answers))
        right.append(number == sample.label)
    return np.array(products), np.array(marks), np.array(right)


def main() -> None:
    from digits.data import prepare

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="run folder or model file (default: the served model)")
    parser.add_argument("--count", type=int, default=1000, help="numbers to fit on, and to check on")
    args = parser.parse_args()
    if args.count < 10:  # fewer leave most calibration bins empty
        parser.error(f"--count must be at least 10, got {args.count}")
    data = prepare(val_size=5000, seed=0)  # the split every run holds out
    digits, labels = (data.x_val[..., 0] * 255).round().astype(np.uint8), data.y_val
    classifier = load_classifier(resolve_model_path(args.model))
    print(f"model: {classifier.name}")
    pair_model = PairModel()
    fit = read(classifier, pair_model, sets.numbers(digits, labels, np.random.default_rng(11), args.count))
    check = read(classifier, pair_model, sets.numbers(digits, labels, np.random.default_rng(12), args.count))

    def loss(chance: float) -> float:
        products, marks, right = fit
        p = np.clip(products * chance**marks, 1e-6, 1 - 1e-6)
        return -float(np.mean(np.where(right, np.log(p), np.log(1 - p))))

    chance = float(minimize_scalar(loss, bounds=(0.5, 1.0), method="bounded").x)
    print(f"MARK_SEGMENTED_RIGHT = {chance:.3f}")
    for name, (products, marks, right) in (("fit", fit), ("check", check)):
        before = expected_calibration_error(products, right)
        after = expected_calibration_error(products * chance**marks, right)
        now = expected_calibration_error(products * MARK_SEGMENTED_RIGHT**marks, right)
        print(
            f"{name:<6} {len(right)} numbers, {right.mean():.2%} right: ECE {before:.2%} -> {after:.2%}"
            f" ({now:.2%} with today's {MARK_SEGMENTED_RIGHT})"
        )


if __name__ == "__main__":
    main()
