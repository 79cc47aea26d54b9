"""Inference: load a trained model (ONNX, Keras, scikit-learn, an ensemble), run it, word its answer.

Every loaded model has ``name``, ``path`` and ``predict_proba(images)``, for images shaped
(N, 28, 28, 1) in [0, 1]; a run folder with a ``calibration.json`` answers with calibrated
probabilities and can say "not a digit". An exported ``model.onnx`` runs on ONNX Runtime, so reading
digits with one needs no TensorFlow (nor scikit-learn); Keras and scikit-learn models import their
libraries only when loaded.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from digits import DigitsError, batch_norm, import_tensorflow_quietly, read_json, runs
from digits.calibration import CalibratedClassifier, Calibration
from digits.preprocess import LONGEST_DIGIT_INK, ink_length

#: The trained model shipped with the package (``make default-model``): serve and predict use it,
#: as ONNX (its ``model.keras`` lies beside it, for training-side tools).
DEFAULT_MODEL = Path(__file__).parent / "default_model" / "model.onnx"
#: Environment variable naming the model ``serve`` and ``predict`` use when none is given.
MODEL_ENV = "DIGITS_MODEL"


#: Answers whose top probability is below this are flagged ``low_confidence`` (API and ``predict``).
LOW_CONFIDENCE = 0.6


def not_a_digit_below(classifier) -> float:
    """The confidence under which ``classifier``'s answer is "not a digit" (0: it never says so).

    A calibrated model carries its threshold (see digits.calibration); others have none.
    """
    return getattr(classifier, "not_a_digit_below", 0.0)


def reading(probabilities: np.ndarray, reject_below: float = 0.0, image: np.ndarray | None = None) -> dict:
    """One image's answer as JSON values: the digit, its probability, whether that is low, whether
    the image is not a digit at all, all ten.

    Not a digit: the top probability is under ``reject_below``, or, for a model that can say "not a
    digit" at all (``reject_below`` > 0), the model input ``image`` traces more ink than any digit
    does (``preprocess.LONGEST_DIGIT_INK``): a scribble in which the model may still find a 0 or a 6.
    The number reader passes no image: the check would drop one digit in a thousand, mostly 8s, from
    numbers of several.
    """
    digit = int(probabilities.argmax())
    confidence = round(float(probabilities[digit]), 6)
    scribble = reject_below > 0 and image is not None and ink_length(image) > LONGEST_DIGIT_INK
    return {
        "digit": digit,
        "confidence": confidence,
        "low_confidence": confidence < LOW_CONFIDENCE,
        "not_a_digit": confidence < reject_below or scribble,
        "probabilities": [round(float(p), 6) for p in probabilities],
    }


def second_look(
    answer: dict,
    thinned: Callable[[], np.ndarray | None],
    predict: Callable[[np.ndarray], np.ndarray],
    reject_below: float,
) -> tuple[dict, np.ndarray] | None:
    """A thick-pen digit answered "not a digit", read again with its strokes thinned: the new answer
    and the 28x28 input it came from if it is a digit, else None (the first answer stands).

    ``thinned`` gives the thinned input (``preprocess.thinned``: None unless the strokes are thick),
    ``predict`` maps images (N, 28, 28) to probabilities (N, 10). Only refusals are looked at again,
    so no digit the model reads changes (docs/real-handwriting.md).
    """
    if not answer["not_a_digit"]:
        return None
    image = thinned()
    if image is None:
        return None
    again = reading(predict(image[np.newaxis])[0], reject_below, image)
    return None if again["not_a_digit"] else (again, image)


class ModelError(DigitsError):
    """A model file that cannot be loaded; the message names the file."""


def _load(path: Path, loader):
    """Call ``loader(path)``, turning any failure into a one-line ModelError naming the file."""
    try:
        return loader(path)
    except Exception as exc:  # Keras, ONNX Runtime and pickle raise many types for a damaged file
        raise ModelError(f"{path}: not a readable model file ({type(exc).__name__})") from None


def check_shapes(path: Path, input_shape, output_shape) -> None:
    """Refuse, in one line, a model that does not read 28x28x1 images into ten probabilities."""
    dims = [d if isinstance(d, int) else None for d in (*input_shape, *output_shape)]
    if len(input_shape) != 4 or dims[1:4] != [28, 28, 1] or len(output_shape) != 2 or dims[5] != 10:
        raise ModelError(
            f"{path}: takes {_shape(input_shape)} to {_shape(output_shape)}; an MNIST model takes"
            " (N, 28, 28, 1) images to (N, 10) probabilities"
        )


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else "N" for d in shape) + ")"


def onnx_session(path: Path, threads: int | None = None):
    """An ONNX Runtime session on the CPU for the model file ``path``, with ``threads`` compute
    threads (default: ONNX Runtime's own); a damaged file is refused in one line (``ModelError``)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers say nothing to a user
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return _load(
        path, lambda p: onnxruntime.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
    )


class OnnxClassifier:
    """An exported ONNX model (``digits export``) run by ONNX Runtime, without TensorFlow.

    Faster than the Keras graph for the server's small batches and far quicker to start; its
    probabilities equal the Keras model's within 1e-5 (tests/test_export.py).
    """

    def __init__(self, path: Path, threads: int | None = None):
        self.path = path
        self.session = onnx_session(path, threads)
        (model_input,), outputs = self.session.get_inputs(), self.session.get_outputs()
        check_shapes(path, model_input.shape, outputs[0].shape)
        self._input = model_input.name
        self.name = _run_name(path) or path.stem

    def predict_proba(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities for images shaped (N, 28, 28, 1) in [0, 1], ``batch_size`` at a time."""
        x = np.asarray(x, dtype=np.float32)
        chunks = [
            self.session.run(None, {self._input: x[i : i + batch_size]})[0]
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, 10), np.float32)


def limit_tensorflow_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools (a server worker leaves the other cores to HTTP and decoding)."""
    import_tensorflow_quietly()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow already started (tests, a second app): it keeps the pools it has.


class KerasClassifier:
    """A saved Keras model behind the common ``predict_proba`` interface.

    Predictions run through a traced graph of the model with its batch norms folded: an eager call
    costs ~5 ms and ``model.predict()`` sets up a pipeline per call, where the graph costs ~0.5 ms per
    batch; folding adds about a fifth more images per second.
    """

    def __init__(self, path: Path, threads: int | None = None):
        try:
            import_tensorflow_quietly()
            import keras
            import tensorflow as tf
        except ModuleNotFoundError:
            raise ModelError(
                f"{path}: a Keras model needs TensorFlow (pip install 'digits[train]'); or run its ONNX"
                f" export, written by: digits export {path.parent} --format onnx"
            ) from None
        if threads:
            limit_tensorflow_threads(threads)

        self.path = path
        # safe_mode: a Lambda layer's pickled Python code is refused rather than run.
        self.model = _load(path, lambda p: keras.models.load_model(p, safe_mode=True))
        check_shapes(path, self.model.input_shape, self.model.output_shape)
        self.name = _run_name(path) or self.model.name
        inference = batch_norm.fold_batch_norm(self.model)
        # A partial, not a lambda: TensorFlow counts traces per code object, and the lambdas of an
        # ensemble's members would share one and trigger its "excessive retracing" warning.
        self._forward = tf.function(
            functools.partial(inference, training=False),
            input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)],
            autograph=False,  # a plain call, no Python control flow to convert
        )

    def predict_proba(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities for images shaped (N, 28, 28, 1) in [0, 1], ``batch_size`` at a time."""
        x = np.asarray(x, dtype=np.float32)
        if len(x) <= batch_size:
            return self._forward(x).numpy()
        chunks = [self._forward(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(chunks)


class SklearnClassifier:
    """A fitted scikit-learn pipeline, saved with skops, behind the common ``predict_proba`` interface.

    skops stores the objects' state, not pickled code; a file naming any type or function outside
    scikit-learn and this package (``os.system``, ``numpy.save``, a class from elsewhere) is refused
    before anything in it is built, so a model file from a stranger cannot run code. (NumPy arrays and
    dtypes are skops' own trusted types; the baselines name nothing else.)
    """

    TRUSTED_MODULES = ("sklearn.", "digits.")

    def __init__(self, path: Path, threads: int | None = None):
        try:
            import skops.io
        except ModuleNotFoundError:
            raise ModelError(f"{path}: a scikit-learn model needs pip install 'digits[train]'") from None
        self.path = path
        listed = _load(path, lambda p: skops.io.get_untrusted_types(file=p))
        refused = [name for name in listed if not name.startswith(self.TRUSTED_MODULES)]
        if refused:
            raise ModelError(f"{path}: refers to {', '.join(refused)}, which loading could run; not loaded")
        self.model = _load(path, lambda p: skops.io.load(p, trusted=listed))
        self.name = _run_name(path) or type(self.model).__name__

    def predict_proba(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities for images shaped (N, 28, 28, 1) in [0, 1]."""
        return self.model.predict_proba(x.reshape(len(x), -1))


class ShiftTTA:
    """Test-time augmentation: average the probabilities over the image and small shifts of it."""

    SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))

    def __init__(self, classifier):
        self.classifier, self.path = classifier, classifier.path
        self.name = f"{classifier.name}+tta"

    def predict_proba(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Mean probabilities over one-pixel shifts (MNIST's border is black, so rolling is a shift)."""
        return np.mean(
            [self.classifier.predict_proba(np.roll(x, s, axis=(1, 2)), batch_size) for s in self.SHIFTS],
            axis=0,
        )


class EnsembleClassifier:
    """Several trained models voting with their averaged probabilities."""

    def __init__(self, members: list, path: Path | None = None, progress: Callable | None = None):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        # progress, if given, hears of each member as it finishes: scoring many big members takes minutes.
        self.members, self.path, self.progress = members, path, progress
        self.name = "ensemble(" + ", ".join(m.name for m in members) + ")"

    @classmethod
    def load(cls, path: Path, threads: int | None = None) -> EnsembleClassifier:
        """Load the members listed in an ensemble folder's ensemble.json."""
        listed = read_json(path)
        members = listed.get("members") if isinstance(listed, dict) else None
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ModelError(f"{path}: not an ensemble file (expected a list of member folders)")
        members = [load_classifier(path.parent / member, threads) for member in members]
        return cls([ShiftTTA(m) if listed.get("tta") else m for m in members], path)

    def predict_proba(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """The members' mean class probabilities."""
        probabilities = []
        for i, member in enumerate(self.members, 1):
            start = time.perf_counter()
            probabilities.append(member.predict_proba(x, batch_size))
            if self.progress:
                seconds = time.perf_counter() - start
                self.progress(f"  member {i}/{len(self.members)} ({member.name}): {seconds:.0f} s")
        return np.mean(probabilities, axis=0)


def _run_name(path: Path) -> str | None:
    """The model name recorded in the run's config.json, when there is one."""
    config = runs.read_config(path.parent)
    return config.model if config else None


LOADERS = {".onnx": OnnxClassifier, ".keras": KerasClassifier, ".skops": SklearnClassifier}
#: What a run folder's model is, first found first: its ONNX export runs fastest and without TensorFlow.
#: (``model.joblib``, what baselines were saved as before, is found only to be refused: see below.)
MODEL_FILES = ("model.onnx", "model.keras", "model.skops", "ensemble.json", "model.joblib")


def resolve_model_path(model_path: str | os.PathLike | None = None) -> Path:
    """The model to use: the argument, else ``$DIGITS_MODEL``, else the packaged default model."""
    path = Path(model_path or os.environ.get(MODEL_ENV) or DEFAULT_MODEL)
    if not path.exists():
        hint = "name a model: a run or ensemble folder, or a .onnx/.keras/.skops file"
        if path == DEFAULT_MODEL:
            hint += " or restore the packaged default model"
        raise DigitsError(f"{path}: no model there; {hint}")
    return path


def load_classifier(path: str | Path, threads: int | None = None):
    """Load a trained model from a run folder, or a ``.onnx`` / ``.keras`` / ``.skops`` /
    ``ensemble.json`` file; ``threads`` caps the threads it computes with (default: the library's).

    Where the folder holds a ``calibration.json`` (``digits calibrate``), the model answers with
    calibrated probabilities and can say "not a digit".
    """
    classifier = load_uncalibrated(path, threads)
    calibration = Calibration.load(classifier.path.parent)
    return CalibratedClassifier(classifier, calibration) if calibration else classifier


def load_uncalibrated(path: str | Path, threads: int | None = None):
    """``load_classifier`` without the calibration: the model's own probabilities."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in MODEL_FILES if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{path}: no {', '.join(MODEL_FILES)} in this folder")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file or run folder")
    # Only the ensemble's own file: a run's config.json or metrics.json is no model.
    if path.name == "ensemble.json":
        return EnsembleClassifier.load(path, threads)
    if path.suffix in (".joblib", ".pkl", ".pickle"):
        raise ModelError(
            f"{path}: a pickle, which can run any code when loaded, so it is not loaded; retrain the model"
            " (digits baselines saves model.skops)"
        )
    if path.suffix not in LOADERS:
        raise ModelError(
            f"{path}: not a .onnx, .keras, .skops or ensemble.json model; pass the run folder instead"
        )
    return LOADERS[path.suffix](path, threads)
