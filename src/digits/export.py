"""Export a trained Keras model (or an ensemble of them) to ONNX, LiteRT or a TensorFlow SavedModel.

Keras' own ``model.export`` does the conversion; this module picks the model, refuses what a format
cannot hold, and names the output. An ONNX file exported into a run folder (the default) is what
``digits predict``, ``serve`` and ``evaluate`` then run, with ONNX Runtime instead of TensorFlow.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np

from digits import DigitsError, import_tensorflow_quietly, runs
from digits.calibration import CALIBRATION_FILE, CalibratedClassifier
from digits.inference import EnsembleClassifier, KerasClassifier, load_uncalibrated

#: Format -> (Keras' name for it, the default output's name in the run folder).
FORMATS = {
    "onnx": ("onnx", "model.onnx"),
    "litert": ("litert", "model.tflite"),
    "saved_model": ("tf_saved_model", "saved_model"),
}


def keras_model(path: str | Path):
    """The Keras model behind a run folder, ``.keras`` file or ensemble of Keras models.

    An ensemble becomes one model that averages its members' probabilities, as
    ``EnsembleClassifier`` does. Anything else is refused with a one-line ``DigitsError``.
    """
    import_tensorflow_quietly()
    import keras

    path = Path(path)
    if path.is_dir():  # its Keras model, not an ONNX file exported there before
        path = next((path / n for n in ("model.keras", "ensemble.json") if (path / n).is_file()), path)
    classifier = load_uncalibrated(path)
    if isinstance(classifier, KerasClassifier):
        return classifier.model, classifier.path
    if isinstance(classifier, EnsembleClassifier):
        inputs = keras.Input((28, 28, 1), name="image")
        outputs = keras.layers.Average()(
            [_member_output(m, inputs, classifier.path, n) for n, m in enumerate(classifier.members, 1)]
        )
        return keras.Model(inputs, outputs, name="ensemble"), classifier.path
    kind = "an ONNX" if classifier.path.suffix == ".onnx" else "a scikit-learn"
    raise DigitsError(f"{classifier.path}: {kind} model; only Keras models (.keras) export")


def _member_output(member, inputs, ensemble: Path, number: int):
    """An ensemble member's probabilities as a Keras tensor: calibrated, as the member answers."""
    import keras

    temperature = None
    if isinstance(member, CalibratedClassifier):
        member, temperature = member.classifier, member.calibration.temperature
    if not isinstance(member, KerasClassifier):
        raise DigitsError(
            f"{ensemble}: only an ensemble of Keras models without test-time shifts exports as one model"
        )
    # Members of one architecture share a model name, and a Keras model's layers need distinct ones.
    member.model.name = f"member_{number}_{member.model.name}"
    probabilities = member.model(inputs)
    if temperature is None:
        return probabilities
    # digits.calibration.scaled, as layers: the log-probabilities divided by the temperature.
    logits = keras.ops.log(keras.ops.clip(probabilities, 1e-12, 1.0)) / temperature
    return keras.ops.softmax(logits, axis=-1)


def default_output(model_path: Path, format: str) -> Path:
    """Where ``export`` writes by default: beside the model, under the format's usual name."""
    return model_path.parent / FORMATS[format][1]


def export(model: str | Path, format: str, out: str | Path | None = None) -> Path:
    """Export ``model`` (a run folder, ``.keras`` file or ensemble) to ``format``; return the path.

    The run's ``config.json``, ``metrics.json`` and ``calibration.json`` are copied beside an ONNX
    file written elsewhere, so that the new folder reads as the run would (calibrated, named).
    """
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    keras_model_, model_path = keras_model(model)
    out = Path(out) if out else default_output(model_path, format)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise DigitsError(f"{out}: already exists; remove it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    # A freshly loaded model has no traced call yet, which the ONNX converter needs.
    keras_model_(np.zeros((1, 28, 28, 1), np.float32))
    try:
        with warnings.catch_warnings():
            # tf2onnx probes numpy for aliases numpy 2 removed; its FutureWarning concerns tf2onnx alone.
            warnings.simplefilter("ignore", FutureWarning)
            keras_model_.export(str(out), format=FORMATS[format][0], verbose=False)
    except Exception:
        shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
        raise
    if format == "onnx" and out.parent.resolve() != model_path.parent.resolve():
        for name in (runs.CONFIG_FILE, runs.METRICS_FILE, CALIBRATION_FILE):
            source, target = model_path.parent / name, out.parent / name
            if source.is_file() and not target.exists():
                shutil.copyfile(source, target)
    return out
