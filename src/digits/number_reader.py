"""Reading a written number: choosing, with the model, how each mark splits into digits.

``segmentation.segment_number`` offers each mark whole and, where it is wide enough to be touching
neighbours, cut into 2, 3, ... digits. The model reads every candidate in one batch, and each mark
is read the way whose digits the model is surest of on average (the geometric mean of their
confidences): segmentation by recognition, as postal-code readers have done since the 1990s.
"""

from __future__ import annotations

import numpy as np

from digits.segmentation import DigitCrop


def candidate_images(marks: list[list[list[DigitCrop]]]) -> np.ndarray:
    """Every candidate digit image of a number, stacked (N, 28, 28), for one model call."""
    return np.stack([crop.image for readings in marks for crops in readings for crop in crops])


def choose(
    marks: list[list[list[DigitCrop]]], probabilities: np.ndarray
) -> list[tuple[DigitCrop, np.ndarray]]:
    """The digits of the number, left to right, each with its probabilities: for every mark, the
    reading whose digits have the highest mean log confidence (``probabilities`` in the order of
    ``candidate_images``)."""
    chosen, start = [], 0
    for readings in marks:
        best, best_score = None, -np.inf
        for crops in readings:
            rows = probabilities[start : start + len(crops)]
            start += len(crops)
            score = float(np.mean(np.log(np.clip(rows.max(axis=1), 1e-12, 1.0))))
            if score > best_score:
                best, best_score = list(zip(crops, rows, strict=True)), score
        chosen.extend(best)
    return chosen
