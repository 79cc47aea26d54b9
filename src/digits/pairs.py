"""Reading two touching digits whole: a 100-class model of digit pairs, with a class for anything else.

Where a flowing hand makes neighbours touch, the number reader cuts the mark where the ink is
thinnest (``digits.segmentation``), and each piece keeps a stub of its neighbour. Hochuli et al.
(2018), "Handwritten digit segmentation: is it still necessary?", read such a mark without cutting
it: a classifier of all 100 pairs, trained on pairs of digits made to touch. This module makes those
pairs from MNIST training digits, the model that reads them (input 28x56: the mark's height fitted
to 20 px as MNIST's digits are, ``preprocess.to_mnist``), and its training. Its 101st class,
``NOT_A_PAIR``, is for marks a pair reading must not stand for: one wide digit, three touching
digits, and non-digits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from digits.images import NoDigitError
from digits.preprocess import to_mnist

#: The pair model's input width (its height is MNIST's 28).
PAIR_WIDTH = 56
#: The class of a mark that is not two digits.
NOT_A_PAIR = 100
#: The share of the generated training marks that are not two digits.
NOT_A_PAIR_SHARE = 0.25
#: The pair model's files, in a run folder and beside the served model.
PAIR_MODEL_KERAS, PAIR_MODEL_ONNX, PAIR_METRICS = "pair_model.keras", "pair_model.onnx", "pair_metrics.json"
#: Where the package keeps the pair model it reads numbers with.
SHIPPED = Path(__file__).parent / "default_model"


class PairModel:
    """The pair model's ONNX export run by ONNX Runtime (no TensorFlow), its probabilities
    calibrated with the temperature fitted in training."""

    def __init__(self, folder: Path = SHIPPED, threads: int | None = None):
        from digits.inference import onnx_session

        self.session = onnx_session(folder / PAIR_MODEL_ONNX, threads)
        self.temperature = float(json.loads((folder / PAIR_METRICS).read_text())["temperature"])

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, 101) of pair-model inputs (N, 28, 56)."""
        from digits.calibration import scaled

        if not len(images):
            return np.zeros((0, NOT_A_PAIR + 1), np.float32)
        x = np.asarray(images, dtype=np.float32)[..., np.newaxis]
        (raw,) = self.session.run(None, {self.session.get_inputs()[0].name: x})
        return scaled(raw, self.temperature)


def pair_input(strength: np.ndarray) -> np.ndarray:
    """A mark's ink strength (a tight crop, ink 1) as the pair model's input, float32 (28, 56)."""
    return to_mnist(strength, PAIR_WIDTH)


def _columns(digit: np.ndarray) -> np.ndarray:
    """A 28x28 digit cut to its inked columns."""
    cols = np.flatnonzero(digit.max(axis=0) > 0.1)
    return digit[:, cols[0] : cols[-1] + 1] if len(cols) else digit


def touching(digits: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Digits (28x28, ink 1) written in a row with each touching or overlapping the one before it:
    by 0 to 4 columns, the next a little up or down. The tight crop of the row."""
    parts = [_columns(d) for d in digits]
    row = np.zeros((40, sum(p.shape[1] for p in parts) + 20), dtype=np.float32)
    left = 10
    for n, part in enumerate(parts):
        if n:
            left -= int(rng.integers(0, 5))
        top = 6 + int(rng.integers(-3, 4))
        region = row[top : top + 28, left : left + part.shape[1]]
        np.maximum(region, part, out=region)
        left += part.shape[1]
    return _tight(row)


def _tight(image: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(image.max(axis=1) > 0.1), np.flatnonzero(image.max(axis=0) > 0.1)
    return image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def widened(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 image's ink stretched sideways, so that it is as wide as 0.8-1.6 times its height:
    a wide digit or a wide non-digit, as a number reader offers a pair reading for."""
    from PIL import Image

    crop = _tight(image)
    width = max(crop.shape[1], round(crop.shape[0] * rng.uniform(0.8, 1.6)))
    return np.asarray(Image.fromarray(crop, "F").resize((width, crop.shape[0]), Image.Resampling.BILINEAR))


def examples(
    x: np.ndarray, y: np.ndarray, count: int, rng: np.random.Generator, negatives: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pair-model inputs (count, 28, 56, 1) and their classes: pairs of the digits ``x``
    (float (N, 28, 28) or (N, 28, 28, 1), ink 1) with labels ``y`` touching, class ``10 * first +
    second``; and, a ``NOT_A_PAIR_SHARE`` of them, ``NOT_A_PAIR``: a digit widened, three digits
    touching, or one of ``negatives`` (28x28 non-digits) widened."""
    x = x.reshape(len(x), 28, 28)
    images, labels = [], []
    while len(images) < count:
        if rng.random() >= NOT_A_PAIR_SHARE:
            i, j = rng.integers(len(x), size=2)
            mark, label = touching([x[i], x[j]], rng), 10 * int(y[i]) + int(y[j])
        else:
            kind = rng.integers(3 if negatives is not None else 2)
            if kind == 0:
                mark = widened(x[rng.integers(len(x))], rng)
            elif kind == 1:
                mark = touching([x[k] for k in rng.integers(len(x), size=3)], rng)
            else:
                mark = widened(negatives[rng.integers(len(negatives))].reshape(28, 28), rng)
            label = NOT_A_PAIR
        try:
            images.append(pair_input(mark))
        except NoDigitError:
            continue
        labels.append(label)
    return np.stack(images)[..., np.newaxis], np.asarray(labels, dtype=np.int64)


def pair_cnn():
    """The pair model: deep-cnn's design (``models.deep_cnn``) over a 28x56 input, 101 outputs."""
    import keras
    from keras import layers

    from digits.models import deep_cnn_features

    inputs = keras.Input(shape=(28, PAIR_WIDTH, 1))
    x = deep_cnn_features(inputs)  # 28x56 -> 1x8 positions of 128 features
    outputs = layers.Dense(NOT_A_PAIR + 1, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="pair_cnn")


def train(
    out: Path,
    epochs: int = 8,
    per_epoch: int = 50_000,
    negatives: int = 5_000,
    seed: int = 0,
    data_dir=None,
    log=print,
) -> dict:
    """Train the pair model on pairs of MNIST training digits, fresh ones every epoch, each digit
    first distorted by the "handwriting" augmentation; fit its temperature on pairs of validation
    digits (``calibration.fit_temperature``); write ``pair_model.keras`` and ``pair_metrics.json``
    to ``out``, and its ONNX export. Returns the metrics."""
    import keras

    from digits.augmentation import augmentation
    from digits.calibration import fit_temperature, scaled
    from digits.data import prepare
    from digits.negatives import training_negatives

    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng([seed, 2018])
    data = prepare(data_dir)
    log(f"generating {2 * negatives:,} non-digit images for the {NOT_A_PAIR_SHARE:.0%} that are not pairs")
    others = training_negatives(2 * negatives, seed)
    train_others, val_others = others[:negatives], others[negatives:]
    x_val, y_val = examples(data.x_val, data.y_val, 10_000, np.random.default_rng([seed, 1]), val_others)

    model = pair_cnn()
    steps = epochs * -(-per_epoch // 128)
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=steps, alpha=0.01)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"])
    distort = augmentation("handwriting", seed)
    for epoch in range(epochs):
        started = time.perf_counter()
        digits = np.concatenate(
            [
                np.asarray(distort(data.x_train[k : k + 4096], training=True))
                for k in range(0, len(data.x_train), 4096)
            ]
        )
        x, y = examples(digits, data.y_train, per_epoch, rng, train_others)
        history = model.fit(x, y, batch_size=128, epochs=1, verbose=0, validation_data=(x_val, y_val))
        h = {k: float(v[-1]) for k, v in history.history.items()}
        log(
            f"epoch {epoch + 1}/{epochs}: loss {h['loss']:.4f}, accuracy {h['accuracy']:.4f},"
            f" validation {h['val_accuracy']:.4f} ({time.perf_counter() - started:.0f} s)"
        )
    model.save(out / PAIR_MODEL_KERAS)
    model.export(str(out / PAIR_MODEL_ONNX), format="onnx", verbose=False)
    raw = model.predict(x_val, batch_size=1024, verbose=0)
    temperature = fit_temperature(raw, y_val)
    calibrated = scaled(raw, temperature)
    metrics = {
        "validation_accuracy": float(np.mean(raw.argmax(axis=1) == y_val)),
        "validation_pair_accuracy": float(np.mean((raw.argmax(axis=1) == y_val)[y_val != NOT_A_PAIR])),
        "validation_marks": len(y_val),
        "temperature": round(temperature, 6),
        "validation_ece": float(_ece(calibrated, y_val)),
        "epochs": epochs,
        "per_epoch": per_epoch,
        "negatives": negatives,
        "seed": seed,
    }
    (out / PAIR_METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
    log(json.dumps(metrics))
    return metrics


def _ece(probabilities: np.ndarray, labels: np.ndarray) -> float:
    from digits.realworld_benchmark import expected_calibration_error

    return expected_calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels)
