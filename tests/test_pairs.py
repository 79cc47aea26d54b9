"""The model of touching pairs (digits.pairs) and how the number reader weighs its reading."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import digit_rows

from digits import pairs
from digits.number_reader import choose
from digits.segmentation import DigitCrop, Mark


def block(height: int, width: int) -> np.ndarray:
    """A mark's ink strength: a solid block with a hole, so its strokes are not hairlines."""
    ink = np.ones((height, width), np.float32)
    ink[height // 4 : -height // 4, width // 4 : -width // 4] = 0
    return ink


def inked_extent(image: np.ndarray, ink: float = 0.0) -> tuple[int, int]:
    rows, cols = np.flatnonzero(image.max(axis=1) > ink), np.flatnonzero(image.max(axis=0) > ink)
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_a_mark_is_fitted_to_20_pixels_high_in_the_wider_input():
    image = pairs.pair_input(block(60, 96))
    assert image.shape == (28, pairs.PAIR_WIDTH)
    assert inked_extent(image) == (20, 32)
    # Wider than the input allows: fitted to its width instead, 8 pixels short of the edges.
    assert inked_extent(pairs.pair_input(block(20, 200)))[1] == pairs.PAIR_WIDTH - 8


def test_touching_digits_share_columns(mnist_test):
    x, _ = mnist_test
    rng = np.random.default_rng(0)
    for i in range(0, 40, 2):
        a, b = (x[i] / 255.0).astype(np.float32), (x[i + 1] / 255.0).astype(np.float32)
        widths = [inked_extent(d, 0.1)[1] for d in (a, b)]
        mark = pairs.touching([a, b], rng)
        assert sum(widths) - 4 <= mark.shape[1] <= sum(widths)


def test_examples_are_pairs_and_a_share_of_other_marks(mnist_test):
    x, y = mnist_test
    negatives = np.zeros((5, 28, 28), np.float32)
    negatives[:, 4:24, 10:18] = 1.0
    images, labels = pairs.examples(x[:500] / 255.0, y[:500], 400, np.random.default_rng(0), negatives)
    assert images.shape == (400, 28, pairs.PAIR_WIDTH, 1)
    assert 0.0 <= images.min() and images.max() == 1.0
    assert set(labels) <= set(range(pairs.NOT_A_PAIR + 1))
    assert 0.15 < np.mean(labels == pairs.NOT_A_PAIR) < 0.35
    # Pairs of digits in every position: both digits vary.
    pair_labels = labels[labels != pairs.NOT_A_PAIR]
    assert len(set(pair_labels // 10)) == 10 and len(set(pair_labels % 10)) == 10


def test_the_shipped_pair_model_reads_touching_test_digits(mnist_test):
    x_test, y_test = mnist_test
    rng = np.random.default_rng(7)
    picks = rng.choice(len(x_test), size=(200, 2), replace=False)
    images = np.stack(
        [pairs.pair_input(pairs.touching([x_test[i] / 255.0, x_test[j] / 255.0], rng)) for i, j in picks]
    )
    probabilities = pairs.PairModel().predict_proba(images)
    assert probabilities.shape == (200, pairs.NOT_A_PAIR + 1)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    right = probabilities.argmax(axis=1) == 10 * y_test[picks[:, 0]] + y_test[picks[:, 1]]
    assert right.mean() >= 0.9


def test_a_damaged_pair_model_file_is_refused_in_one_line(tmp_path):
    from digits.inference import ModelError

    (tmp_path / pairs.PAIR_MODEL_ONNX).write_bytes(b"not a model")
    (tmp_path / pairs.PAIR_METRICS).write_text('{"temperature": 1.0}')
    with pytest.raises(ModelError, match="not a readable model file"):
        pairs.PairModel(tmp_path)


def pair_row(first: int, second: int, p: float) -> np.ndarray:
    row = np.full(pairs.NOT_A_PAIR + 1, (1 - p) / pairs.NOT_A_PAIR)
    row[10 * first + second] = p
    return row


def crop(value: float, width: int = 1) -> DigitCrop:
    return DigitCrop(np.full((28, 28), value, np.float32), (0, 0, width, 1))


def test_a_pair_reading_stands_where_it_is_surer_than_the_mark_and_its_cuts():
    whole, left, right = crop(0.1, width=3), crop(0.2), crop(0.3)
    marks = [Mark([[whole], [left, right]])]
    # Not a digit whole, three times as wide as high, the cut read 4 and 1 at 90% and 80%; the
    # pair model is sure of 47.
    rows = digit_rows([(8, 0.4), (4, 0.9), (1, 0.8)])
    chosen = choose(marks, rows, 0.6, {0: pair_row(4, 7, 0.95)})
    assert [c for c, _ in chosen] == [left, right]
    assert [int(p.argmax()) for _, p in chosen] == [4, 7]
    # Without the pair model, the cut.
    assert [int(p.argmax()) for _, p in choose(marks, rows, 0.6)] == [4, 1]
    # Read whole as a digit at 99%: the pair, at 90%, does not outweigh it.
    rows = digit_rows([(0, 0.99), (4, 0.8), (1, 0.7)])
    assert [c for c, _ in choose(marks, rows, 0.6, {0: pair_row(4, 7, 0.9)})] == [whole]


def boxed(value: float, width: int, height: int = 20) -> DigitCrop:
    return DigitCrop(np.full((28, 28), value, np.float32), (0, 0, width, height))


def test_the_pair_reading_is_weighed_by_the_marks_width_for_the_writing():
    from digits.number_reader import answer

    three = Mark([[boxed(0.4, 12)]])
    # A mark 0.9 of the writing's height wide, read whole as 4 at 80%, cut as 4 and 1 at 80% and 70%.
    mark = Mark([[boxed(0.1, 18)], [boxed(0.2, 12), boxed(0.3, 6)]])
    rows = np.vstack([digit_rows([(3, 0.95)]), digit_rows([(4, 0.8), (4, 0.8), (1, 0.7)])])
    # The pair model sure of "41": at that width, a pair is as likely as one digit.
    assert answer([three, mark], rows, 0.3, pairs={1: pair_row(4, 1, 0.99)})[0]["number"] == "341"
    # Less sure, the digit read whole stands.
    assert answer([three, mark], rows, 0.3, pairs={1: pair_row(4, 1, 0.5)})[0]["number"] == "34"
    # Narrower for the writing, the mark stays one digit however sure the pair model is.
    slim = Mark([[boxed(0.1, 16)], [boxed(0.2, 11), boxed(0.3, 5)]])
    assert answer([three, slim], rows, 0.3, pairs={1: pair_row(4, 1, 0.99)})[0]["number"] == "34"


def test_a_narrow_mark_beside_digits_may_be_a_pair_but_is_never_cut():
    from digits.number_reader import answer

    three = Mark([[boxed(0.4, 12)]])
    # Narrow (0.7 of its height), read whole as 9 at 40%; its cut reads 9 and 1 surely.
    narrow = Mark([[boxed(0.1, 14)], [boxed(0.2, 9), boxed(0.3, 5)]], narrow=True)
    rows = np.vstack([digit_rows([(3, 0.95)]), digit_rows([(9, 0.4), (9, 0.99), (1, 0.99)])])
    assert answer([three, narrow], rows, 0.3)[0]["number"] == "39"
    assert answer([three, narrow], rows, 0.3, pairs={1: pair_row(9, 1, 0.99)})[0]["number"] == "391"


def test_a_refused_mark_is_a_pair_only_where_the_digit_model_vouches_for_digits():
    from digits.number_reader import answer

    whole, left, right = crop(0.1), crop(0.2), crop(0.3)
    refused = digit_rows([(8, 0.4), (4, 0.3), (1, 0.3)])  # not a digit whole, nor cut
    # Alone, a stray mark stays "not a number" however sure the pair model is of a pair.
    lone = [Mark([[whole], [left, right]])]
    assert answer(lone, refused, 0.6, pairs={0: pair_row(4, 7, 0.99)})[0]["not_a_number"]
    # Beside a digit read whole, the pair stands where the pair model is sure enough.
    marks = [Mark([[crop(0.4)]]), *lone]
    rows = np.vstack([digit_rows([(3, 0.95)]), refused])
    assert answer(marks, rows, 0.6, pairs={1: pair_row(4, 7, 0.9)})[0]["number"] == "347"
    assert answer(marks, rows, 0.6, pairs={1: pair_row(4, 7, 0.5)})[0]["number"] == "3"
    # Alone, a narrow mark read whole as a digit is kept whole, whatever the pair model says.
    narrow = [Mark([[whole], [left, right]], narrow=True)]
    rows = digit_rows([(1, 0.9), (4, 0.3), (1, 0.3)])
    assert answer(narrow, rows, 0.6, pairs={0: pair_row(4, 7, 0.99)})[0]["number"] == "1"


def test_a_lone_mark_refused_whole_is_digits_only_where_it_is_wide_enough_to_be():
    from digits.number_reader import answer

    def lone(width: int) -> list[Mark]:
        return [Mark([[boxed(0.1, width)], [boxed(0.2, width // 2), boxed(0.3, width - width // 2)]])]

    # Refused whole, its halves read 4 and 1 surely.
    rows = digit_rows([(8, 0.4), (4, 0.99), (1, 0.99)])
    # As wide as high, as a letter or an object most often is: the cut does not stand.
    assert answer(lone(20), rows, 0.6)[0]["not_a_number"]
    # Twice as wide as high, as two touching digits most often are: it does.
    assert answer(lone(40), rows, 0.6)[0]["number"] == "41"
    # The same for the pair model's reading, by its own prior (the cut, 4 and 1 at 80%, too unsure
    # at either width).
    unsure = digit_rows([(8, 0.4), (4, 0.8), (1, 0.8)])
    assert answer(lone(14), unsure, 0.6, pairs={0: pair_row(4, 7, 0.99)})[0]["not_a_number"]
    assert answer(lone(30), unsure, 0.6, pairs={0: pair_row(4, 7, 0.99)})[0]["number"] == "47"
    # Two such marks: a row of marks each read as digits is a number, however wide each is.
    rows = np.vstack([rows, rows])
    assert answer(lone(20) * 2, rows, 0.6)[0]["number"] == "4141"


def test_pair_probabilities_reads_wholes_and_a_refused_marks_pieces_in_one_call():
    from digits.number_reader import pair_probabilities

    class Recorder:
        def __init__(self):
            self.calls = []

        def predict_proba(self, images):
            self.calls.append(images.shape)
            return np.arange(len(images))[:, None] * np.ones((1, pairs.NOT_A_PAIR + 1))

    def piece(width: int) -> DigitCrop:
        return DigitCrop(np.zeros((28, 28), np.float32), (0, 0, width, 20), block(20, width))

    digit = Mark([[piece(12)]], strength=block(20, 12))  # nothing to read as a pair
    pair = Mark([[piece(24)], [piece(12), piece(12)]], strength=block(20, 24))
    three = Mark(
        [[piece(36)], [piece(12), piece(24)], [piece(24), piece(12)], [piece(12)] * 3], strength=block(20, 36)
    )
    rows = digit_rows([(3, 0.9), (4, 0.9), (4, 0.9), (1, 0.9), (8, 0.1)] + [(1, 0.9)] * 7)
    model = Recorder()
    found_pairs, triples = pair_probabilities([digit, pair, three], rows, 0.6, model)
    assert model.calls == [(6, 28, pairs.PAIR_WIDTH)]  # two wholes, and both pieces of two cuts
    assert {n: int(row[0]) for n, row in found_pairs.items()} == {1: 0, 2: 1}
    assert {k: (int(a[0]), int(b[0])) for k, (a, b) in triples[2].items()} == {1: (2, 3), 2: (4, 5)}
    # Read whole as a digit, the same mark has no pieces to read as pairs.
    rows[4] = digit_rows([(8, 0.9)])[0]
    assert pair_probabilities([digit, pair, three], rows, 0.6, Recorder())[1] == {}


def test_a_refused_mark_of_three_is_read_as_a_digit_beside_a_pair():
    from digits.number_reader import answer

    three = Mark([[boxed(0.4, 12)]])
    # Refused whole; cut in two, the left piece reads 7 and the right piece is no one digit.
    mark = Mark([[boxed(0.1, 36)], [boxed(0.2, 12), boxed(0.3, 24)], [boxed(0.5, 12)] * 3])
    rows = np.vstack(
        [digit_rows([(3, 0.95)]), digit_rows([(8, 0.1), (7, 0.9), (4, 0.2), (7, 0.3), (4, 0.3), (2, 0.3)])]
    )
    not_a_pair = np.eye(pairs.NOT_A_PAIR + 1)[pairs.NOT_A_PAIR]
    triples = {1: {1: (not_a_pair, pair_row(4, 2, 0.95))}}
    body = answer([three, mark], rows, 0.6, triples=triples)[0]
    assert body["number"] == "3742"
    assert [d["box"]["x"] for d in body["digits"]] == [0, 0, 0, 12]  # the pair's piece cut in half
    # The pair model unsure of the piece: the mark is left out.
    assert (
        answer([three, mark], rows, 0.6, triples={1: {1: (not_a_pair, pair_row(4, 2, 0.5))}})[0]["number"]
        == "3"
    )
    # Alone, a refused mark stays "not a number".
    assert answer([mark], rows[1:], 0.6, triples={0: triples[1]})[0]["not_a_number"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--per-epoch", "100"], "--per-epoch must be at least 128, got 100"),
        (["--negatives", "0"], "--negatives must be at least 1, got 0"),
    ],
)
def test_train_pairs_refuses_bad_settings_in_one_line(capsys, tmp_path, flags, message):
    from digits.cli import main

    code = main(["train-pairs", "--out", str(tmp_path / "pairs"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("digits: error: ") and err.count("\n") == 1 and message in err


def test_train_pairs_refuses_to_overwrite_a_folder_with_work_in_it(capsys, tmp_path):
    from digits.cli import main

    (tmp_path / pairs.PAIR_MODEL_KERAS).write_text("precious")
    assert main(["train-pairs", "--out", str(tmp_path)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / pairs.PAIR_MODEL_KERAS).read_text() == "precious"


@pytest.mark.slow
def test_train_pairs_writes_a_model_and_its_onnx_export(tmp_path, mnist_dir):
    import keras

    from digits.calibration import scaled

    metrics = pairs.train(
        tmp_path, epochs=1, per_epoch=256, negatives=50, data_dir=mnist_dir, log=lambda _: None
    )
    recorded = json.loads((tmp_path / pairs.PAIR_METRICS).read_text())
    assert recorded == metrics and recorded["temperature"] > 0
    images = np.random.default_rng(0).random((8, 28, pairs.PAIR_WIDTH)).astype(np.float32)
    by_keras = keras.models.load_model(tmp_path / pairs.PAIR_MODEL_KERAS)(images[..., None]).numpy()
    np.testing.assert_allclose(
        pairs.PairModel(tmp_path).predict_proba(images), scaled(by_keras, recorded["temperature"]), atol=1e-5
    )
