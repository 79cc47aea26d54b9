"""The real-world benchmark's sets and scoring, calibration, and the generated negatives."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from conftest import digit_rows, spiral
from PIL import Image

from digits import DigitsError, data
from digits import realworld as sets
from digits.calibration import (
    CALIBRATION_FILE,
    CalibratedClassifier,
    Calibration,
    fit_temperature,
    scaled,
)
from digits.images import decode_image
from digits.realworld import NONE, Answer
from digits.realworld_benchmark import expected_calibration_error, score
from digits.strokes import drawn_digits


def fashion_or_skip():
    if data.load_fashion("t10k") is None:
        message = f"Fashion-MNIST not found in {data.FASHION_DIR} (apt-get install dataset-fashion-mnist)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


# ---------------------------------------------------------------------------- the sets


def test_other_writers_are_low_resolution_scans_of_dark_ink():
    samples = sets.other_writers(np.random.default_rng(0), count=20)
    assert len(samples) == 20
    for sample in samples:
        image = decode_image(sample.data)
        assert image.format == "JPEG" and 24 <= image.width <= 8 * 8 * 2 + 8
        assert sample.label in "0123456789" and len(sample.label) == 1
        # Dark ink on light paper: the border is paper.
        border = np.concatenate([image.gray[0], image.gray[-1]])
        assert border.mean() > 150 and image.gray.min() < 120


def test_lined_paper_holds_digits_on_ruled_and_squared_paper_and_in_boxes():
    x = np.zeros((3, 28, 28), np.uint8)
    x[:, 4:24, 12:16] = 255  # a 1
    samples = sets.lined_paper(x, np.arange(3), np.random.default_rng(0), count=3)
    assert [s.kind for s in samples] == list(sets.PAPERS)
    for sample in samples:
        image = decode_image(sample.data)
        assert image.format == "JPEG" and sample.label in "012"
        paper = image.gray > 200
        # Light paper with something darker than it beyond the digit: lines or a frame.
        assert paper.mean() > 0.5 and (~paper).mean() > 0.02
    with pytest.raises(ValueError, match="unknown paper"):
        sets.on_paper(x[0], np.random.default_rng(0), "graph")


def test_desk_photos_show_the_desk_beyond_a_sheet_of_paper():
    x = np.zeros((20, 28, 28), np.uint8)
    x[:, 4:24, 12:16] = 255  # a 1
    samples = sets.photos(sets.on_a_desk, "on-a-desk", x, np.arange(20) % 10, np.random.default_rng(0), 20)
    assert {s.kind for s in samples} == {"on-a-desk"}
    desk_at_the_edge = []
    for sample in samples:
        image = decode_image(sample.data)
        assert image.format == "JPEG" and sample.label in "0123456789"
        assert (image.gray > 195).mean() > 0.2  # the sheet
        border = np.concatenate([image.gray[0], image.gray[-1], image.gray[:, 0], image.gray[:, -1]])
        desk_at_the_edge.append((border < 170).mean() > 0.05)  # the desk, darker than any paper
    # Now and then the sheet fills the photo.
    assert sum(desk_at_the_edge) >= 0.8 * len(samples)


def ink_seen_from_afar(sample: sets.Sample) -> tuple[float, float]:
    """A photo taken from afar's ink box, as shares of the photo's width: its height and its width."""
    image = decode_image(sample.data)
    assert image.format == "JPEG" and 1280 <= image.width <= 2560 and image.height == image.width * 3 // 4
    rows, cols = np.ptp(np.argwhere(image.gray < 150), axis=0) + 1  # the pen, darker than any paper
    shown = image.gray.shape[1]  # decoded at a reduced scale
    return rows / shown, cols / shown


def test_photos_from_afar_hold_a_small_digit_on_a_big_sheet():
    x = np.zeros((5, 28, 28), np.uint8)
    x[:, 4:24, 12:16] = 255  # a 1
    samples = sets.photos(sets.from_afar, "from-afar", x, np.arange(5), np.random.default_rng(0), 5)
    assert {s.kind for s in samples} == {"from-afar"}
    for sample in samples:
        high, wide = ink_seen_from_afar(sample)
        # The 1 spans 20 of its 28 pixels' height: 2-6% of the photo's width makes 1.4-4.3% of it.
        assert 0.01 <= high <= 0.05 and wide < high


def test_numbers_have_two_to_six_digits_and_some_touch():
    x = np.zeros((6, 28, 28), np.uint8)
    x[:, 6:22, 4:24] = 255
    samples = sets.numbers(x, np.arange(6), np.random.default_rng(0), count=60)
    assert {len(s.label) for s in samples} <= set(range(2, 7))
    assert {s.kind for s in samples} == {"touching", "apart"}
    for sample in samples:
        image = Image.open(io.BytesIO(sample.data))
        assert image.format == "JPEG"
        assert image.width > image.height  # written in a row


def test_numbers_from_afar_hold_a_small_row_of_digits_on_a_big_sheet():
    x = np.zeros((6, 28, 28), np.uint8)
    x[:, 4:24, 6:22] = 255  # a block as wide as a 0
    samples = sets.numbers_from_afar(x, np.arange(6), np.random.default_rng(0), count=20)
    assert {len(s.label) for s in samples} <= set(range(2, 7))
    assert {s.kind for s in samples} <= {"touching", "apart"}
    for sample in samples:
        high, wide = ink_seen_from_afar(sample)
        # Each block is 20 pixels of its 28-pixel box, 2-6% of the photo's width; two make a wide row.
        assert 0.01 <= high <= 0.05 and wide > high


def test_not_digits_hold_letters_scribbles_and_blank_paper():
    samples = sets.not_digits(np.random.default_rng(0), count=24)
    assert len(samples) == 24 and all(s.label == "" for s in samples)
    assert {"letter", "scribble", "blank"} <= {s.kind for s in samples}
    for sample in samples:
        decode_image(sample.data)  # every one is a readable image


def test_not_digits_include_fashion_test_items_where_installed():
    fashion_or_skip()
    kinds = [s.kind for s in sets.not_digits(np.random.default_rng(0), count=10)]
    assert kinds.count("fashion-mnist-test") == 5


def test_drawn_digits_stay_on_the_canvas_with_each_digit_equally_often():
    drawings = drawn_digits(np.random.default_rng(0), count=50)
    assert [d.label for d in drawings].count(7) == 5
    for drawing in drawings:
        points = np.concatenate([np.asarray(stroke) for stroke in drawing.strokes])
        assert points.min() >= 0 and points.max() <= 1
        assert 6 <= drawing.width <= 36


# ---------------------------------------------------------------------------- scoring


def test_expected_calibration_error():
    # Confidence 0.9 and right 9 times in 10: calibrated.
    assert expected_calibration_error(np.full(10, 0.9), np.arange(10) < 9) == pytest.approx(0.0)
    # Confidence 0.95 and right half the time: 0.45 off.
    assert expected_calibration_error(np.full(10, 0.95), np.arange(10) < 5) == pytest.approx(0.45)
    # Two bins of equal size, off by 0.1 and 0.3: 0.2 on average.
    confidence = np.r_[np.full(10, 0.5), np.full(10, 0.9)]
    right = np.r_[np.arange(10) < 6, np.arange(10) < 6]
    assert expected_calibration_error(confidence, right) == pytest.approx(0.2)


def test_score_counts_not_a_digit_as_wrong_for_digits_and_right_for_non_digits():
    answers = [Answer("3", "x", "3", 0.9), Answer("3", "x", NONE, 0.2), Answer("5", "x", "6", 0.7)]
    row = score("other-writers", answers, seconds=0.3)
    assert row["accuracy"] == pytest.approx(1 / 3)
    assert row["not_a_digit"] == pytest.approx(1 / 3)
    assert row["confusions"] == [(f"3→{NONE}", 1), ("5→6", 1)]
    assert row["ms_per_image"] == pytest.approx(100)

    negatives = [
        Answer("", "letter", NONE, 0.1),
        Answer("", "letter", "4", 0.8),
        Answer("", "blank", NONE, None),
    ]
    row = score("not-digits", negatives, seconds=1)
    assert row["accuracy"] == pytest.approx(2 / 3)
    assert row["by_kind"] == {"blank": 1.0, "letter": 0.5}


def test_real_world_benchmark_writes_its_report(mnist_dir, tmp_path, capsys):
    """A small run of the upload sets through the packaged model, as the command line starts it:
    report, results, error sheets and the headline table printed."""
    from digits.cli import main
    from digits.inference import DEFAULT_MODEL

    sets_run = ["other-writers", "numbers", "not-digits", "not-digits-as-numbers"]
    args = ["benchmark", "--real-world", "--data-dir", str(mnist_dir), "--out", str(tmp_path)]
    assert main([*args, "--sets", *sets_run, "--scale", "0.01"]) == 0
    assert "other-writers      17 images  read right" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["sets"]
    assert results["model"] and [row["set"] for row in rows] == sets_run
    assert [row["images"] for row in rows] == [17, 20, 10, 10]  # each set at 1% of its size
    # Sets of non-digits are scored by how many were turned away, with no calibration to measure.
    assert [("by_kind" in row, "ece" in row) for row in rows] == [(False, True)] * 2 + [(True, False)] * 2
    report = (tmp_path / "report.md").read_text()
    assert "| other-writers | 17 |" in report and "read right" in report
    for row in rows:
        if "sheet" in row:
            assert Image.open(tmp_path / row["sheet"]).width > 0
            assert f"]({row['sheet']})" in report
    assert DEFAULT_MODEL.is_file()


def test_real_world_benchmark_refuses_unknown_sets(tmp_path):
    from digits.realworld_benchmark import run_real_world

    with pytest.raises(ValueError, match="unknown set 'mnist'"):
        run_real_world(None, tmp_path, only=["mnist"])
    with pytest.raises(ValueError, match="scale"):
        run_real_world(None, tmp_path, scale=0)


# ---------------------------------------------------------------------------- calibration


def test_temperature_scaling_keeps_the_ranking_and_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 10))
    labels = np.array([rng.choice(10, p=np.exp(row) / np.exp(row).sum()) for row in logits])
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # The same probabilities, made twice as sure of themselves: temperature 2 undoes it.
    overconfident = scaled(true, 0.5)
    assert (overconfident.argmax(axis=1) == true.argmax(axis=1)).all()
    assert fit_temperature(overconfident, labels) == pytest.approx(2.0, rel=0.1)
    assert np.allclose(scaled(overconfident, 2.0), true, atol=1e-5)


def test_calibration_file_round_trip_and_damage(tmp_path):
    calibration = Calibration(1.5, 0.4, {"validation_digits": 10})
    calibration.save(tmp_path)
    assert Calibration.load(tmp_path) == calibration
    assert Calibration.load(tmp_path / "elsewhere") is None
    (tmp_path / CALIBRATION_FILE).write_text('{"temperature": -1, "not_a_digit_below": 0.4, "fitted_on": {}}')
    with pytest.raises(DigitsError, match="temperature must be positive"):
        Calibration.load(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text('{"temperature": 1}')
    with pytest.raises(DigitsError, match="not a calibration file"):
        Calibration.load(tmp_path)


def test_calibrated_classifier_scales_and_carries_its_threshold():
    class Fixed:
        name, path = "fixed", None

        def predict_proba(self, x, batch_size=1024):
            return np.tile(np.r_[0.9, np.full(9, 0.1 / 9)], (len(x), 1))

    calibrated = CalibratedClassifier(Fixed(), Calibration(2.0, 0.3, {}))
    probabilities = calibrated.predict_proba(np.zeros((2, 28, 28, 1)))
    assert probabilities.shape == (2, 10) and probabilities[0, 0] < 0.9
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert calibrated.not_a_digit_below == 0.3


# ---------------------------------------------------------------------------- negatives


def test_generated_letters_and_marks_are_dark_strokes_on_white():
    from digits.negatives import drawn_letter, random_marks

    rng = np.random.default_rng(0)
    for image in [drawn_letter(rng) for _ in range(5)] + [random_marks(rng) for _ in range(5)]:
        pixels = np.asarray(image)
        assert pixels.max() == 255 and pixels.min() == 0
        assert 0.005 < np.mean(pixels < 128) < 0.5


def test_the_letters_drawn_for_training_are_the_letters_the_benchmark_prints():
    from digits.negatives import _LETTERS
    from digits.realworld import LETTERS

    # One definition of a letter that is not a digit, for what trains and what measures.
    assert {name[0] for name in _LETTERS} == set(LETTERS)


def test_training_negatives_are_model_inputs():
    fashion_or_skip()
    from digits.negatives import training_negatives

    negatives = training_negatives(40, seed=0)
    assert negatives.dtype == np.float32 and negatives.shape[1:] == (28, 28, 1)
    assert 35 <= len(negatives) <= 40  # an item too faint to find is left out
    assert negatives.min() >= 0 and negatives.max() == 1.0
    assert np.array_equal(negatives, training_negatives(40, seed=0))  # the same seed, the same images


def test_a_scribble_traces_more_ink_than_any_digit(mnist_dir):
    from digits.preprocess import LONGEST_DIGIT_INK, ink_length, normalise

    line = np.zeros((28, 28), np.float32)
    line[4:24, 13:15] = 1.0
    assert ink_length(line) == pytest.approx(21, abs=1)  # a 20-pixel stroke, two pixels wide
    assert ink_length(normalise(spiral(3))) > LONGEST_DIGIT_INK
    # Fitted at the 99.9th percentile of validation digits and distorted copies: clean digits pass.
    validation = data.prepare(val_size=5000, seed=0, data_dir=mnist_dir).x_val
    lengths = np.array([ink_length(image) for image in validation])
    assert np.mean(lengths > LONGEST_DIGIT_INK) < 0.003


def test_an_input_longer_than_any_digit_is_not_a_digit_whatever_the_model_reads():
    from digits.inference import reading
    from digits.preprocess import normalise

    sure = np.array([0.99] + [0.01 / 9] * 9)
    scribble, digit = normalise(spiral(3)), normalise(spiral(0.9))  # most of a circle: a 0
    assert reading(sure, 0.5, scribble)["not_a_digit"]
    assert not reading(sure, 0.5, digit)["not_a_digit"]
    # A model that cannot say "not a digit" (no threshold) still never does.
    assert not reading(sure, 0.0, scribble)["not_a_digit"]


# ---------------------------------------------------------------------------- numbers


def test_a_refused_digit_gets_a_second_look_only_if_thinned_it_is_a_digit():
    from digits.inference import reading, second_look

    thin = np.zeros((28, 28), np.float32)

    def predict(confidence):
        return lambda images: np.array([[confidence] + [(1 - confidence) / 9] * 9] * len(images))

    refused, read = reading(predict(0.3)(thin[None])[0], 0.5), reading(predict(0.9)(thin[None])[0], 0.5)
    # Read as a digit: never looked at again.
    assert second_look(read, lambda: pytest.fail("looked again"), predict(0.9), 0.5) is None
    # Refused, strokes not thick (nothing to thin): the refusal stands.
    assert second_look(refused, lambda: None, predict(0.9), 0.5) is None
    # Refused, and thinned still not a digit: the refusal stands.
    assert second_look(refused, lambda: thin, predict(0.4), 0.5) is None
    # Refused, and thinned a digit: that reading, and the input the model saw.
    answer, image = second_look(refused, lambda: thin, predict(0.9), 0.5)
    assert answer == read and image is thin


def crop(value: float, width: int = 1, height: int = 1):
    """A candidate digit: a flat image that tells the crops apart, and a box of the given size."""
    from digits.segmentation import DigitCrop

    return DigitCrop(np.full((28, 28), value, np.float32), (0, 0, width, height))


def test_number_reader_keeps_the_reading_the_model_is_surest_of():
    from digits.number_reader import candidate_images, choose
    from digits.segmentation import Mark

    whole, left, right, alone = crop(0.1), crop(0.2), crop(0.3), crop(0.4)
    marks = [Mark([[whole], [left, right]]), Mark([[alone]])]
    images = candidate_images(marks)
    assert images.shape == (4, 28, 28)

    # Whole at 40%, cut at 95% and 90%: cut; the single mark is read as it is.
    chosen = choose(marks, digit_rows([(8, 0.4), (1, 0.95), (7, 0.9), (3, 0.99)]))
    assert [c for c, _ in chosen] == [left, right, alone]
    assert [int(p.argmax()) for _, p in chosen] == [1, 7, 3]
    # Whole at 97%: whole, though one half alone would be surer.
    chosen = choose(marks, digit_rows([(0, 0.97), (1, 0.99), (7, 0.5), (3, 0.99)]))
    assert [c for c, _ in chosen] == [whole, alone]
    # Whole at 90%, halves at 99% and 90%: surer on average, but both right only 89% of the time.
    chosen = choose(marks, digit_rows([(0, 0.9), (1, 0.99), (0, 0.9), (3, 0.99)]))
    assert [c for c, _ in chosen] == [whole, alone]
    # A narrow mark (a 1 touching its neighbour?) is cut only if, whole, it is not a digit.
    narrow = [Mark([[whole], [left, right]], narrow=True), Mark([[alone]])]
    rows = digit_rows([(8, 0.7), (1, 0.99), (9, 0.99), (3, 0.99)])
    assert [c for c, _ in choose(narrow, rows, reject_below=0.6)] == [whole, alone]
    assert [c for c, _ in choose(narrow, rows, reject_below=0.8)] == [left, right, alone]
    # Not narrow, and twice as wide as the writing is high: cut.
    wide = crop(0.1, width=2)
    wide_marks = [Mark([[wide], [left, right]]), Mark([[alone]])]
    assert [c for c, _ in choose(wide_marks, rows, reject_below=0.6)] == [left, right, alone]
    # Not a digit whole: every cut is weighed, not only the first that reads as a digit.
    other_left, other_right = crop(0.5), crop(0.6)
    narrow = [Mark([[whole], [left, right], [other_left, other_right]], narrow=True), Mark([[alone]])]
    rows = digit_rows([(8, 0.5), (1, 0.9), (9, 0.9), (1, 0.99), (3, 0.99), (3, 0.99)])
    assert [c for c, _ in choose(narrow, rows, reject_below=0.6)] == [other_left, other_right, alone]
    # With no digit beside it, a narrow mark refused whole is not cut: a letter, not a number.
    assert [c for c, _ in choose(narrow[:1], rows[:5], reject_below=0.6)] == [whole]


def test_number_reader_cuts_a_wide_mark_refused_whole_only_into_digits():
    from digits.number_reader import answer, choose
    from digits.segmentation import Mark

    whole, left, right, other_left, other_right = crop(0.1, 4), crop(0.2), crop(0.3), crop(0.4), crop(0.5)
    letter = [Mark([[whole], [left, right], [other_left, other_right]])]
    # Not a digit whole (40%), four times as wide as high. One cut is surer as a product (99% x
    # 55%), but its second piece is not a digit (under 60%); the other cut is a 1 and a 7 at 90%
    # each: only that one can stand.
    rows = digit_rows([(8, 0.4), (1, 0.99), (4, 0.55), (1, 0.9), (7, 0.9)])
    assert [c for c, _ in choose(letter, rows, 0.6)] == [other_left, other_right]
    # With no cut into digits alone, the mark stays whole and not a digit: no number, not a "1".
    rows = digit_rows([(8, 0.4), (1, 0.99), (4, 0.55), (1, 0.99), (7, 0.2)])
    assert [c for c, _ in choose(letter, rows, 0.6)] == [whole]
    assert answer(letter, rows, 0.6)[0]["not_a_number"]
    # A narrow mark (a marker's 1?) beside a digit keeps the surest cut: its piece that is not a
    # digit is a sliver.
    narrow = [Mark([[crop(0.6)]]), Mark(letter[0].readings, narrow=True)]
    rows = np.vstack([digit_rows([(3, 0.99)]), rows])
    assert [c for c, _ in choose(narrow, rows, 0.6)][1:] == [left, right]
    assert answer(narrow, rows, 0.6)[0]["number"] == "31"
    # Alone in the image, it is not a number: the halves of a letter read as digits too readily.
    assert answer(narrow[1:], rows[1:], 0.6)[0]["not_a_number"]


def test_number_reader_looks_again_at_a_refused_thick_mark_only(monkeypatch):
    from digits import number_reader
    from digits.number_reader import choose, look_again
    from digits.segmentation import Mark

    whole, left, right, alone, thick = crop(0.1), crop(0.2), crop(0.3), crop(0.4), crop(0.5).image
    marker, pen = np.ones((40, 20), np.float32), np.ones((40, 4), np.float32)  # the marks' ink
    # Thinning itself is tested in test_preprocess: here a marker's ink thins to `thick`, a pen's not.
    monkeypatch.setattr(number_reader, "thin_strokes", lambda strength: thick if strength is marker else None)
    marks = [Mark([[whole], [left, right]], strength=marker), Mark([[alone]], strength=marker)]
    # The first mark refused whole (40%) and its cut not sure either; the second read (99%).
    rows = digit_rows([(8, 0.4), (1, 0.6), (7, 0.6), (3, 0.99)])
    looked_at = []

    def predict(confidence):
        def model(images):
            looked_at.append(images)
            return digit_rows([(1, confidence)] * len(images))

        return model

    # Thinned, the refused mark is a 1 at 95%: it stands for the mark whole, with the thinned input.
    again, again_rows = look_again(marks, rows, predict(0.95), 0.5)
    assert len(looked_at) == 1 and np.array_equal(looked_at[0], thick[None])  # only the refused mark
    assert again[0].readings[0][0].image is thick and again[0].readings[0][0].box == whole.box
    assert again[0].readings[1] is marks[0].readings[1] and again[1] is marks[1]
    assert [int(p.argmax()) for _, p in choose(again, again_rows, 0.5)] == [1, 3]
    assert rows[0].argmax() == 8  # the caller's probabilities are left as they were
    # Thinned and still not a digit: nothing changes.
    same, same_rows = look_again(marks, rows, predict(0.3), 0.5)
    assert all(a is b for a, b in zip(same, marks, strict=True)) and np.array_equal(same_rows, rows)
    # Thin strokes (nothing to thin), or every mark read: the model is not asked again.
    looked_at.clear()
    thin = [Mark([[whole], [left, right]], strength=pen), Mark([[alone]])]
    assert look_again(thin, rows, predict(0.95), 0.5)[0] is thin
    sure = digit_rows([(0, 0.9), (1, 0.6), (7, 0.6), (3, 0.99)])
    assert look_again(marks, sure, predict(0.95), 0.5)[0] is marks
    assert not looked_at


def test_number_reader_weighs_cuts_by_a_marks_width_for_the_writing():
    from digits.number_reader import CUT_WIDTH, choose, cut_chance
    from digits.segmentation import Mark

    assert cut_chance(CUT_WIDTH) == pytest.approx(0.5)
    assert cut_chance(0.5) < cut_chance(1.0) < cut_chance(2.0)

    # A 7 read whole at 90%, its halves as "71" at 99% each: the product alone would cut it.
    rows = digit_rows([(7, 0.9), (7, 0.99), (1, 0.99), (4, 0.99)])
    left, right, four = crop(0.2, 8, 20), crop(0.3, 8, 20), crop(0.4, 16, 20)
    as_wide_as_a_digit = crop(0.1, 16, 20)
    chosen = choose([Mark([[as_wide_as_a_digit], [left, right]]), Mark([[four]])], rows, 0.5)
    assert [c for c, _ in chosen] == [as_wide_as_a_digit, four]
    # The same readings of a mark twice as wide as the writing is high: two digits.
    twice_as_wide = crop(0.1, 40, 20)
    chosen = choose([Mark([[twice_as_wide], [left, right]]), Mark([[four]])], rows, 0.5)
    assert [c for c, _ in chosen] == [left, right, four]
    # A number of one mark has nothing to measure the writing by: the product decides.
    chosen = choose([Mark([[as_wide_as_a_digit], [left, right]])], rows[:3], 0.5)
    assert [c for c, _ in chosen] == [left, right]
    # A mark read whole as "not a digit" is weighed as before, without the width.
    rows = digit_rows([(7, 0.4), (7, 0.99), (1, 0.99), (4, 0.99)])
    chosen = choose([Mark([[as_wide_as_a_digit], [left, right]]), Mark([[four]])], rows, 0.5)
    assert [c for c, _ in chosen] == [left, right, four]
