"""Calibrated confidence and the "not a digit" answer, both fitted on the validation split.

* **Temperature scaling** (Guo et al., 2017, "On Calibration of Modern Neural Networks"): one number
  ``T`` divides the model's log-probabilities before the softmax, chosen to minimise the log loss on
  validation digits. The ranking of the ten digits never changes, only how sure the answer says it is.
* **Not a digit**: an answer whose calibrated top probability is below a threshold. With a model
  trained on outlier-exposure negatives (``digits.negatives``), non-digits get near-uniform
  probabilities, so a threshold that keeps nearly every digit turns most of them away. The threshold
  is the ``DIGITS_REJECTED`` quantile of the validation digits' confidence.

Both are fitted on the validation images and on a copy of them distorted by the "handwriting"
augmentation, since strangers' digits are harder than MNIST's own: fitted on clean MNIST alone, the
confidence would be too high for them. They are saved as ``calibration.json`` in the run folder,
and ``CalibratedClassifier`` applies them wherever the model is loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from digits import DigitsError, read_json, write_json

CALIBRATION_FILE = "calibration.json"
#: The share of validation digits (clean and distorted) that the threshold may call "not a digit".
DIGITS_REJECTED = 0.005


@dataclass(frozen=True)
class Calibration:
    """A model's temperature and "not a digit" threshold, and what they were fitted on."""

    temperature: float
    not_a_digit_below: float
    fitted_on: dict

    @classmethod
    def load(cls, folder: Path) -> Calibration | None:
        """The calibration saved in a run folder, or None where there is none."""
        path = Path(folder) / CALIBRATION_FILE
        if not path.is_file():
            return None
        values = read_json(path)
        try:
            calibration = cls(
                float(values["temperature"]), float(values["not_a_digit_below"]), values["fitted_on"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DigitsError(f"{path}: not a calibration file ({exc})") from None
        if not (calibration.temperature > 0 and 0 <= calibration.not_a_digit_below < 1):
            raise DigitsError(f"{path}: the temperature must be positive and the threshold in [0, 1)")
        return calibration

    def save(self, folder: Path) -> None:
        write_json(Path(folder) / CALIBRATION_FILE, asdict(self))


def scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their log-probabilities divided by ``temperature``, renormalised."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the log loss of ``probabilities`` against ``labels``."""
    from scipy.optimize import minimize_scalar

    def loss(log_t: float) -> float:
        p = scaled(probabilities, float(np.exp(log_t)))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0))))

    return float(np.exp(minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded").x))


def fit(
    classifier, x_val: np.ndarray, y_val: np.ndarray, negatives: np.ndarray | None, seed: int = 0
) -> Calibration:
    """Fit the temperature and threshold on validation digits, clean and distorted.

    ``negatives`` (held-out generated non-digits), if given, are only scored: the share turned away
    is recorded beside the calibration, never used to choose it.
    """
    from digits.augmentation import augmentation

    distorted = np.asarray(augmentation("handwriting", seed)(x_val, training=True))
    x = np.concatenate([x_val, distorted])
    y = np.concatenate([y_val, y_val])
    raw = classifier.predict_proba(x)
    temperature = fit_temperature(raw, y)
    confidence = scaled(raw, temperature).max(axis=1)
    threshold = float(np.quantile(confidence, DIGITS_REJECTED))
    fitted_on = {
        "validation_digits": len(x_val),
        "distorted_copies": len(distorted),
        "digits_rejected": float(np.mean(confidence < threshold)),
        "clean_digits_rejected": float(np.mean(confidence[: len(x_val)] < threshold)),
    }
    if negatives is not None and len(negatives):
        negative_confidence = scaled(classifier.predict_proba(negatives), temperature).max(axis=1)
        fitted_on["held_out_negatives"] = len(negatives)
        fitted_on["negatives_rejected"] = float(np.mean(negative_confidence < threshold))
    return Calibration(round(temperature, 6), round(threshold, 6), fitted_on)


class CalibratedClassifier:
    """A classifier whose probabilities are temperature-scaled, with its "not a digit" threshold."""

    def __init__(self, classifier, calibration: Calibration):
        self.classifier, self.calibration = classifier, calibration
        self.name, self.path = classifier.name, classifier.path
        self.not_a_digit_below = calibration.not_a_digit_below

    def predict_proba(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Calibrated class probabilities for images shaped (N, 28, 28, 1) in [0, 1]."""
        return scaled(self.classifier.predict_proba(x, batch_size), self.calibration.temperature)
