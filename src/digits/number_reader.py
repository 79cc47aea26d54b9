"""Reading a written number: choosing, with the model, how each mark splits into digits.

``segmentation.segment_number`` offers each mark whole and, where it is wide enough to be touching
neighbours, cut into 2, 3, ... digits. The model reads every candidate in one batch, and each mark
is read the way most likely to be right as a whole (the product of its digits' calibrated
confidences): segmentation by recognition, as postal-code readers have done since the 1990s.
The number's confidence also charges each mark for the chance that it was segmented wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from digits.inference import LOW_CONFIDENCE, reading
from digits.pairs import NOT_A_PAIR, pair_input
from digits.preprocess import thin_strokes
from digits.segmentation import DigitCrop, Mark


def candidate_images(marks: list[Mark]) -> np.ndarray:
    """Every candidate digit image of a number, stacked (N, 28, 28), for one model call."""
    return np.stack([crop.image for mark in marks for crops in mark.readings for crop in crops])


def look_again(
    marks: list[Mark],
    probabilities: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    reject_below: float,
) -> tuple[list[Mark], np.ndarray]:
    """The marks and their candidates' probabilities after a second look at thick marks, as the
    single-digit reader takes one (``inference.second_look``): a mark read whole as "not a digit"
    whose strokes are thick (``preprocess.thin_strokes`` of ``Mark.strength``) is read again
    thinned, and if it is then a digit, that reading stands for the mark whole, before ``choose``
    weighs it against the mark's cuts.

    ``probabilities`` are the model's for ``candidate_images(marks)``; ``predict`` maps images
    (N, 28, 28) to probabilities (N, 10). Only refusals are looked at again, and thin strokes never,
    so no digit the model reads changes.
    """
    wholes = _whole_rows(marks)
    thinned = {
        n: thin_strokes(mark.strength)
        for n, mark in enumerate(marks)
        if mark.strength is not None and probabilities[wholes[n]].max() < reject_below
    }
    thinned = {n: image for n, image in thinned.items() if image is not None}
    if not thinned:
        return marks, probabilities
    again = predict(np.stack(list(thinned.values())))
    marks, probabilities = list(marks), probabilities.copy()
    for (n, image), row in zip(thinned.items(), again, strict=True):
        if row.max() >= reject_below:
            whole = DigitCrop(image, marks[n].readings[0][0].box)
            marks[n] = dataclasses.replace(marks[n], readings=[[whole], *marks[n].readings[1:]])
            probabilities[wholes[n]] = row
    return marks, probabilities


#: How likely a mark of a number is to hold touching digits, from its width over the writing's
#: height (the median height of the number's marks, which a touching pair does not change):
#: 1 / (1 + (CUT_WIDTH / ratio) ** CUT_SHARPNESS). Chosen on numbers of MNIST validation digits
#: (plan S8 in docs/experiments.md).
CUT_WIDTH = 1.2
CUT_SHARPNESS = 2
#: The same prior's half-way width for a mark read whole as two touching digits by the pair model,
#: which tells a pair from one wide digit better than the digit model tells a half from a digit,
#: and whether a narrow mark (``Mark.narrow``) read whole as a digit is offered that reading (a 1
#: touching its neighbour). Chosen on numbers of MNIST validation digits (plan W8).
PAIR_CUT_WIDTH = 0.8
NARROW_PAIRS = True


def pair_probabilities(
    marks: list[Mark], probabilities: np.ndarray, reject_below: float, pair_model
) -> tuple[dict[int, np.ndarray], dict[int, dict[int, tuple[np.ndarray, np.ndarray]]]]:
    """For ``choose``, from one call of the pair model (``pairs.PairModel``), its calibrated
    probabilities: ``pairs``, for each mark a pair reading is offered for (one with a reading cut in
    two), by the mark's index; and ``triples``, where a mark the digit model refuses whole may hold
    three touching digits (it has a reading cut in three), for each piece of each of its cuts in
    two, by the mark's index and the cut's index in ``Mark.readings``: a digit beside a pair is a
    digit on one side of the cut and a pair on the other. ``probabilities`` are the digit model's
    for ``candidate_images(marks)``."""
    offered = [
        n
        for n, mark in enumerate(marks)
        if mark.strength is not None and any(len(crops) == 2 for crops in mark.readings)
    ]
    images = [pair_input(marks[n].strength) for n in offered]
    cut_at, wholes = [], _whole_rows(marks)
    for n, mark in enumerate(marks):
        if probabilities[wholes[n]].max() >= reject_below or not any(len(c) >= 3 for c in mark.readings):
            continue
        for k, crops in enumerate(mark.readings):
            if len(crops) == 2 and all(crop.strength is not None for crop in crops):
                cut_at.append((n, k))
                images.extend(pair_input(crop.strength) for crop in crops)
    if not images:
        return {}, {}
    rows = pair_model.predict_proba(np.stack(images))
    pairs = dict(zip(offered, rows[: len(offered)], strict=True))
    triples: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for i, (n, k) in enumerate(cut_at):
        first = len(offered) + 2 * i
        triples.setdefault(n, {})[k] = (rows[first], rows[first + 1])
    return pairs, triples


def _whole_rows(marks: list[Mark]) -> np.ndarray:
    """Where each mark's reading whole lies in ``candidate_images(marks)``."""
    return np.cumsum([0] + [sum(len(crops) for crops in mark.readings) for mark in marks[:-1]])


def _pair_digits(pair: np.ndarray, crops: tuple[DigitCrop, DigitCrop]) -> tuple[float, list]:
    """Two digits read by the pair model (calibrated probabilities ``pair``): the score log P(the
    pair), and each digit with its marginal probabilities, in ``crops``."""
    joint = pair[:NOT_A_PAIR].reshape(10, 10)
    first, second = joint.sum(axis=1), joint.sum(axis=0)
    total = max(float(first.sum()), 1e-12)
    rows = (first / total, second / total)
    score = float(np.log(max(float(joint.max()), 1e-12)))
    return score, [(crop, row.astype(np.float32)) for crop, row in zip(crops, rows, strict=True)]


def _halves(crop: DigitCrop) -> tuple[DigitCrop, DigitCrop]:
    """A piece holding two digits, as two crops: its image, and each half of its box."""
    x, y, w, h = crop.box
    return DigitCrop(crop.image, (x, y, w // 2, h)), DigitCrop(crop.image, (x + w // 2, y, w - w // 2, h))


def _triple_readings(cuts: dict[int, tuple[np.ndarray, np.ndarray]], readings: list, floor: float) -> list:
    """A mark's readings as a digit beside a pair (``pair_probabilities``' triples), for each of its cuts in
    two and each side: those whose digit and pair both reach ``floor`` (a log confidence)."""
    out = []
    for k, (left_pair, right_pair) in cuts.items():
        (left, left_row), (right, right_row) = readings[k][1]
        for digit, row, piece, pair in (
            (left, left_row, right, right_pair),
            (right, right_row, left, left_pair),
        ):
            digit_score = float(np.log(max(float(row.max()), 1e-12)))
            pair_score, pair_digits = _pair_digits(pair, _halves(piece))
            if digit_score >= floor and pair_score >= floor:
                read = [(digit, row), *pair_digits] if digit is left else [*pair_digits, (digit, row)]
                out.append((digit_score + pair_score, read))
    return out


def _pair_reading(pair: np.ndarray, cuts: list[tuple[float, list]]) -> tuple[float, list]:
    """A mark read whole by the pair model (calibrated probabilities ``pair``): the score log P(the
    pair), each digit with its marginal probabilities, in the boxes of the best of ``cuts`` in two."""
    _, pieces = max((scored for scored in cuts if len(scored[1]) == 2), key=lambda scored: scored[0])
    return _pair_digits(pair, (pieces[0][0], pieces[1][0]))


def choose(
    marks: list[Mark],
    probabilities: np.ndarray,
    reject_below: float = 0.0,
    pairs: dict[int, np.ndarray] | None = None,
    triples: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] | None = None,
) -> list[tuple[DigitCrop, np.ndarray]]:
    """The digits of the number, left to right, each with its probabilities: for every mark, the
    reading whose digits are most likely all right, the product of their confidences
    (``probabilities`` in the order of ``candidate_images``). A narrow mark (``Mark.narrow``) is
    cut only if, whole, its confidence is below ``reject_below``: not a digit, and some other mark
    is read whole as a digit. A wider mark that is not a digit whole is read cut only where every
    piece is a digit; else it stays not a digit. Alone in the image, such a mark's readings as
    digits are weighed by its width (``cut_chance``) and must still reach ``reject_below``.

    A mean would not charge a reading for its extra digits: a wide 0 cut into two confident halves
    outscored the whole 0. Each added digit is one more chance to be wrong, as in the number's own
    confidence. The model reads the halves of a digit with as much confidence as a whole digit, so
    where the number has other marks to measure the writing by, a mark it reads whole as a digit
    is also weighed by how wide it is for the writing (``cut_chance``).

    ``pairs`` maps a mark's index to the pair model's calibrated probabilities for it
    (``pair_probabilities``): its reading whole as two touching digits joins its cuts, scored by the
    probability of the pair, weighed by width with its own prior (``PAIR_CUT_WIDTH``), and offered
    also for a narrow mark read whole as a digit beside other marks (``NARROW_PAIRS``); where the
    mark whole is not a digit, it stands only if that reaches ``reject_below`` and either a cut of
    the mark reads as digits or another mark is read whole as a digit. ``triples``
    (``pair_probabilities``) add, under the same gate, a refused mark's readings as a digit
    beside a pair."""
    chosen, start, floor = [], 0, np.log(max(reject_below, 1e-12))
    writing = float(np.median([mark.readings[0][0].box[3] for mark in marks])) if marks else 1.0
    wholes = _whole_rows(marks)
    digits_whole = [bool(probabilities[w].max() >= reject_below) for w in wholes] if marks else []
    for n, mark in enumerate(marks):
        readings = []
        for crops in mark.readings:
            rows = probabilities[start : start + len(crops)]
            start += len(crops)
            score = float(np.sum(np.log(np.clip(rows.max(axis=1), 1e-12, 1.0))))
            readings.append((score, list(zip(crops, rows, strict=True))))
        whole_is_digit = readings[0][0] >= floor
        ratio = mark.readings[0][0].box[2] / writing  # the mark's width for the writing's height
        cuts = readings[1:]
        into_digits = [scored for scored in cuts if all(row.max() >= reject_below for _, row in scored[1])]
        if not whole_is_digit and not mark.narrow:
            # Touching digits leave a digit in every piece; a letter or an object cut apart would
            # leave its one digit-like piece in the number. (A narrow mark's piece that is not a
            # digit may be a sliver of a marker's 1, which the cut's other piece reads.)
            cuts = into_digits
        alone = not any(digits_whole[:n] + digits_whole[n + 1 :])
        # A narrow mark refused whole may be a 1 touching its neighbour in a number, but with no
        # digit beside it to say that the image is a number, it is far likelier a letter or an
        # object whose halves read as digits: it stays not a digit (plan P11).
        lone_narrow = alone and mark.narrow and not whole_is_digit
        if lone_narrow:
            cuts = []
        # The pair model alone reads a lone object as a pair too readily: a mark refused whole is
        # read as a pair, or a digit beside a pair, only where the digit model reads some cut of it
        # as digits, or a digit beside it (then the image is answered as a number anyway).
        vouched = not alone or (bool(into_digits) and not lone_narrow)
        pair = None
        if pairs is not None and n in pairs:
            offered = _pair_reading(pairs[n], readings[1:])
            if whole_is_digit or (offered[0] >= floor and vouched):
                pair = offered
        if triples is not None and n in triples and not whole_is_digit and vouched:
            cuts = [*cuts, *_triple_readings(triples[n], readings, floor)]
        if len(marks) == 1 and not whole_is_digit:
            # A lone mark refused whole: nothing else in the image says it is a number, and a letter
            # or an object offers as many cuts as touching digits, whose pieces read as surely. Its
            # readings as digits are weighed by the prior that a mark so wide holds touching digits,
            # as beside other marks, and each must still reach the line a digit must (plan P12).
            cuts, pair = _weighed_by_width(cuts, pair, ratio)
            cuts = [scored for scored in cuts if scored[0] >= floor]
            pair = pair if pair is not None and pair[0] >= floor else None
        if mark.narrow and whole_is_digit:
            cuts = []  # read whole as a digit: never cut
            if not (NARROW_PAIRS and len(marks) > 1):
                pair = None
        if whole_is_digit and len(marks) > 1 and (cuts or pair):
            readings[0] = (readings[0][0] + np.log1p(-cut_chance(ratio)), readings[0][1])
            cuts, pair = _weighed_by_width(cuts, pair, ratio)
        readings = readings[:1] + cuts + ([pair] if pair is not None else [])
        chosen.extend(max(readings, key=lambda scored: scored[0])[1])
    return chosen


def _weighed_by_width(cuts: list, pair: tuple | None, ratio: float) -> tuple[list, tuple | None]:
    """A mark's cut readings and its pair reading (scored, as in ``choose``), each weighed by the
    prior that a mark ``ratio`` times as wide as the writing is high holds touching digits: the
    cuts' with ``CUT_WIDTH``, the pair reading's with its own ``PAIR_CUT_WIDTH``."""
    cut = np.log(cut_chance(ratio))
    cuts = [(score + cut, digits) for score, digits in cuts]
    if pair is not None:
        pair = (pair[0] + np.log(cut_chance(ratio, PAIR_CUT_WIDTH)), pair[1])
    return cuts, pair


def cut_chance(ratio: float, half_way: float = CUT_WIDTH) -> float:
    """The prior chance that a mark ``ratio`` times as wide as the writing is high holds touching
    digits: a half at ``half_way``, less for narrower marks, more for wider ones."""
    return float(np.clip(1.0 / (1.0 + (half_way / max(ratio, 1e-6)) ** CUT_SHARPNESS), 1e-9, 1 - 1e-9))


#: The chance that one mark of a number was segmented right (one digit: not two touching digits
#: read as one, nor one digit cut in two), which no digit's confidence sees. Fitted by log loss on
#: numbers built from MNIST validation digits, for the served model, by
#: ``python benchmarks/number_confidence.py``.
MARK_SEGMENTED_RIGHT = 0.995


def whole_number(readings: list[dict]) -> tuple[str, float]:
    """A number from its marks' readings (``inference.reading``, left to right): its digits as text,
    marks that are not digits left out, and the chance that it is read right, every digit read right
    (the product of their calibrated confidences, or of every mark's if none is a digit) and every
    mark segmented right."""
    digits = [r for r in readings if not r["not_a_digit"]]
    product = float(np.prod([r["confidence"] for r in digits or readings]))
    return "".join(str(r["digit"]) for r in digits), product * MARK_SEGMENTED_RIGHT ** len(readings)


def answer(
    marks: list[Mark],
    probabilities: np.ndarray,
    reject_below: float,
    scale: float = 1.0,
    pairs: dict[int, np.ndarray] | None = None,
    triples: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] | None = None,
) -> tuple[dict, list[DigitCrop]]:
    """A written number's answer as JSON values, as ``POST /api/predict-number`` and ``digits predict
    --number`` give it, and the crop each of its digits was read from.

    ``probabilities`` are the model's for ``candidate_images(marks)``; ``scale`` turns the marks'
    boxes into the original image's pixels; ``pairs`` and ``triples`` as ``choose`` takes them. The answer:
    ``number`` (the marks that are digits), ``not_a_number`` (none is), ``confidence``
    (``whole_number``), ``low_confidence`` and ``digits``, each mark's reading with its ``box``.
    """
    chosen = choose(marks, probabilities, reject_below, pairs, triples)
    digits = []
    for crop, row in chosen:
        x, y, w, h = (round(v * scale) for v in crop.box)
        digits.append({**reading(row, reject_below), "box": {"x": x, "y": y, "width": w, "height": h}})
    number, confidence = whole_number(digits)
    confidence = round(confidence, 6)
    body = {
        "number": number,
        "not_a_number": not number,
        "confidence": confidence,
        "low_confidence": confidence < LOW_CONFIDENCE,
        "digits": digits,
    }
    return body, [crop for crop, _ in chosen]
