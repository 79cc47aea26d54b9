"""The model zoo: Keras architectures by name, their training defaults, and loading saved models.

Every model takes float32 images shaped (N, 28, 28, 1) in [0, 1] and outputs ten class probabilities.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits import DigitsError, check_choice, import_tensorflow_quietly, read_json
from digits.calibration import CalibratedClassifier, Calibration
from digits.data import read_run_config

#: Augmentation recipes a model or ``digits train --augment`` can name (see digits.augmentation).
AUGMENTATIONS = ("none", "affine", "elastic", "wide", "handwriting")
#: The small trained model shipped with the package (``make default-model``): serve and predict use it.
DEFAULT_MODEL = Path(__file__).parent / "default_model" / "model.keras"
#: Environment variable naming the model ``serve`` and ``predict`` use when none is given.
MODEL_ENV = "DIGITS_MODEL"
#: ``--distribute`` choices: one machine's devices, or several machines described by ``TF_CONFIG``.
STRATEGIES = ("mirrored", "multi-worker")


@dataclass(frozen=True)
class ModelSpec:
    """An architecture and the training recipe that goes with it."""

    build: Callable
    description: str
    epochs: int
    batch_size: int = 128
    learning_rate: float = 1e-3
    #: "cosine" decays the learning rate to 1% over the run; "constant" keeps it (the Keras example).
    schedule: str = "cosine"
    #: Linear warm-up from a tenth of the peak learning rate over this many epochs.
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    #: Default augmentation recipe: "none", "affine", "elastic" (affine plus elastic distortions) or
    #: "wide" (larger rotations and shifts); see digits.augmentation.
    augment: str = "affine"
    #: Adam keeps an exponential moving average of the weights with this momentum, and the run ends
    #: on the average (Keras' ``use_ema``); 0 trains without it.
    ema_momentum: float = 0.0


def _classifier_head(x):
    """Ten softmax outputs, kept in float32 so mixed precision on GPUs stays numerically safe."""
    from keras import layers

    return layers.Dense(10, activation="softmax", dtype="float32", name="probabilities")(x)


def _conv_bn_relu(x, filters: int, kernel: int = 3, strides: int = 1, padding: str = "same"):
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def seed_cnn():
    """The seed system's 5-layer CNN: two convolution + pooling stages, two dense layers, dropout."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.25),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax", dtype="float32"),
        ],
        name="seed_cnn",
    )


def keras_example():
    """The classic Keras MNIST example (Conv32-Pool-Conv64-Pool-Dropout-Dense): the reference to beat."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax", dtype="float32"),
        ],
        name="keras_example",
    )


def fast_cnn(channels: tuple[int, int, int] = (24, 48, 96), name: str = "fast_cnn"):
    """Time-to-accuracy on a CPU: strided convolutions shrink the image early, batch norm trains fast.

    Conv 5x5/2 (14x14) -> Conv 3x3/2 (7x7) -> Conv 3x3 (5x5) -> Dense, 24/48/96 channels: a third less
    arithmetic per image than the Keras example, and batch norm lets it train at a high learning rate.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(28, 28, 1))
    x = _conv_bn_relu(inputs, channels[0], kernel=5, strides=2)
    x = _conv_bn_relu(x, channels[1], strides=2)
    x = _conv_bn_relu(x, channels[2], padding="valid")
    x = layers.Flatten()(x)
    return keras.Model(inputs, _classifier_head(x), name=name)


def deep_cnn(channels: tuple[int, int, int] = (32, 64, 128), name: str = "deep_cnn", deskew: bool = False):
    """Seven batch-normalised convolutions with learned (strided) downsampling and dropout, for accuracy.

    The design Chris Deotte arrived at by ablation on Kaggle's MNIST: 32C3-32C3-32C5S2, 64C3-64C3-64C5S2,
    128C4, each stage followed by 40% dropout; about nine times fast-cnn's arithmetic per image.
    ``channels`` sets the three widths (deep-cnn-slim: 24/48/96); ``deskew`` puts a
    :class:`digits.augmentation.Deskew` layer first (deep-cnn-deskew).
    """
    import keras
    from keras import layers

    from digits.augmentation import Deskew

    inputs = keras.Input(shape=(28, 28, 1))
    x = Deskew()(inputs) if deskew else inputs
    for filters in channels[:2]:
        x = _conv_bn_relu(x, filters, padding="valid")
        x = _conv_bn_relu(x, filters, padding="valid")
        x = _conv_bn_relu(x, filters, kernel=5, strides=2)
        x = layers.Dropout(0.4)(x)
    x = _conv_bn_relu(x, channels[2], kernel=4, padding="valid")  # 4x4 -> 1x1
    x = layers.Dropout(0.4)(layers.Flatten()(x))
    return keras.Model(inputs, _classifier_head(x), name=name)


def m5():
    """An et al. (2020)'s M5: five unpadded 5x5 convolutions (32 to 160 channels), no pooling, batch norm.

    28x28 shrinks by 4 pixels per layer to 8x8x160, read by one dense layer with a batch-normalised
    output. About nine times deep-cnn's arithmetic per image: a model for GPUs, slow on two CPU cores.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(28, 28, 1))
    x = inputs
    for filters in (32, 64, 96, 128, 160):
        x = _conv_bn_relu(x, filters, kernel=5, padding="valid")
    x = layers.Dense(10, use_bias=False)(layers.Flatten()(x))
    x = layers.BatchNormalization()(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="m5")


def _residual_block(x, filters: int):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""
    from keras import layers

    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.BatchNormalization()(layers.Conv2D(filters, 1, use_bias=False)(x))
    y = _conv_bn_relu(x, filters)
    y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
    return layers.ReLU()(layers.Add()([shortcut, y]))


def resnet():
    """A small residual network for 28x28 inputs: stem, then one residual block at 14x14 and at 7x7."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(28, 28, 1))
    x = _conv_bn_relu(inputs, 32)
    x = layers.MaxPooling2D()(x)  # 14x14
    x = _residual_block(x, 48)
    x = layers.MaxPooling2D()(x)  # 7x7
    x = _residual_block(x, 96)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inputs, _classifier_head(x), name="resnet")


def _dense_block(x, layers_count: int, growth: int):
    """Each layer (BN-ReLU-Conv3x3) sees the concatenation of all earlier feature maps."""
    from keras import layers

    for _ in range(layers_count):
        y = layers.ReLU()(layers.BatchNormalization()(x))
        y = layers.Conv2D(growth, 3, padding="same", use_bias=False)(y)
        x = layers.Concatenate()([x, y])
    return x


def densenet():
    """A small densely connected network (DenseNet-BC style) for 28x28 inputs."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(28, 28, 1))
    x = _conv_bn_relu(inputs, 32)
    x = layers.MaxPooling2D()(x)  # 14x14
    x = _dense_block(x, 4, growth=16)
    # Transition: compress channels by half with a 1x1 convolution, then halve the resolution.
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Conv2D(x.shape[-1] // 2, 1, use_bias=False)(x)
    x = layers.AveragePooling2D(2)(x)  # 7x7
    x = _dense_block(x, 6, growth=24)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inputs, _classifier_head(x), name="densenet")


#: The recipe of the models built for accuracy rather than speed: longer, with elastic distortions.
_ACCURACY_RECIPE = dict(
    epochs=15,
    batch_size=128,
    learning_rate=3e-3,
    warmup_epochs=1.0,
    label_smoothing=0.1,
    augment="elastic",
)

#: deep-cnn's recipe, shared by its narrower variant (which only trains fewer epochs, on averaged weights).
_DEEP_CNN_RECIPE = dict(
    batch_size=128,
    learning_rate=2e-3,
    warmup_epochs=1.0,
    label_smoothing=0.1,
    augment="affine",
)

MODELS: dict[str, ModelSpec] = {
    "seed-cnn": ModelSpec(
        seed_cnn,
        "the seed system's 5-layer Sequential CNN (Conv32-Pool-Conv64-Pool-Dense128-Dense10)",
        epochs=15,
        batch_size=64,
        learning_rate=3e-3,
    ),
    "keras-example": ModelSpec(
        keras_example,
        "the classic Keras example, the reference (Adam 1e-3 constant, batch 128, no augmentation)",
        epochs=15,
        batch_size=128,
        learning_rate=1e-3,
        schedule="constant",
        augment="none",
    ),
    "fast-cnn": ModelSpec(
        fast_cnn,
        "strided, batch-normalised CNN built for time to 99% on a CPU (one epoch, one-cycle, high rate)",
        epochs=1,
        batch_size=96,
        learning_rate=1.4e-2,
        warmup_epochs=0.3,
        label_smoothing=0.1,
        augment="none",
    ),
    "fast-cnn-wide": ModelSpec(
        functools.partial(fast_cnn, (48, 96, 192), "fast_cnn_wide"),
        "fast-cnn at twice the width (48/96/192 channels), room for strangers' hands and non-digits",
        epochs=20,
        batch_size=128,
        learning_rate=3e-3,
        label_smoothing=0.1,
        augment="handwriting",
    ),
    "deep-cnn": ModelSpec(
        deep_cnn,
        "seven batch-normalised convolutions with dropout (Deotte's design), the most accurate single model",
        epochs=24,
        **_DEEP_CNN_RECIPE,
    ),
    "m5": ModelSpec(
        m5,
        "An et al.'s M5: five unpadded 5x5 convolutions, 32-160 channels, batch norm; for GPUs",
        epochs=30,
        batch_size=128,
        learning_rate=1e-3,
        warmup_epochs=1.0,
        label_smoothing=0.1,
        augment="wide",
        ema_momentum=0.999,
    ),
    "resnet": ModelSpec(
        resnet,
        "small residual network (stem + 2 residual blocks, 48/96 channels), elastic augmentation",
        **_ACCURACY_RECIPE,
    ),
    "densenet": ModelSpec(
        densenet,
        "small densely connected network (two dense blocks, growth 16/24), elastic augmentation",
        **_ACCURACY_RECIPE,
    ),
    "deep-cnn-slim": ModelSpec(
        functools.partial(deep_cnn, (24, 48, 96), "deep_cnn_slim"),
        "deep-cnn at 3/4 width (24/48/96 channels, 44% fewer multiply-adds) for slow CPUs",
        epochs=18,
        ema_momentum=0.999,
        **_DEEP_CNN_RECIPE,
    ),
    "deep-cnn-deskew": ModelSpec(
        functools.partial(deep_cnn, name="deep_cnn_deskew", deskew=True),
        "deep-cnn reading deskewed digits (slant removed inside the model), a different view for ensembles",
        epochs=24,
        ema_momentum=0.999,
        **_DEEP_CNN_RECIPE,
    ),
}


def build_model(name: str):
    """A fresh, uncompiled Keras model for a registered architecture."""
    check_choice("model", name, MODELS)
    return MODELS[name].build()


#: Answers whose top probability is below this are flagged ``low_confidence`` (API and ``predict``).
LOW_CONFIDENCE = 0.6


def not_a_digit_below(classifier) -> float:
    """The confidence under which ``classifier``'s answer is "not a digit" (0: it never says so).

    A calibrated model carries its threshold (see digits.calibration); others have none.
    """
    return getattr(classifier, "not_a_digit_below", 0.0)


def reading(probabilities: np.ndarray, reject_below: float = 0.0) -> dict:
    """One image's answer as JSON values: the digit, its probability, whether that is low, whether
    the image is not a digit at all (top probability under ``reject_below``), all ten."""
    digit = int(probabilities.argmax())
    confidence = round(float(probabilities[digit]), 6)
    return {
        "digit": digit,
        "confidence": confidence,
        "low_confidence": confidence < LOW_CONFIDENCE,
        "not_a_digit": confidence < reject_below,
        "probabilities": [round(float(p), 6) for p in probabilities],
    }


class ModelError(DigitsError):
    """A model file that cannot be loaded; the message names the file."""


def _load(path: Path, loader):
    """Call ``loader(path)``, turning any failure into a one-line ModelError naming the file."""
    try:
        return loader(path)
    except Exception as exc:  # Keras and pickle raise many types for a damaged file
        raise ModelError(f"{path}: not a readable model file ({type(exc).__name__})") from None


def fold_batch_norm(model):
    """An inference-only copy of ``model`` with each batch norm that follows a convolution folded into it.

    In inference a batch norm is a fixed per-channel scale and shift, so the convolution can apply it
    through its kernel and bias: same outputs (to float rounding), one layer less to run, and TensorFlow
    fuses the remaining Conv-Bias-ReLU into one kernel. Models without such pairs come back unchanged.
    """
    import keras

    if isinstance(model, keras.Sequential):
        return model  # clone_model can re-route only a functional model's calls
    folded = {}  # convolution name -> the batch norm that is its only consumer
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.axis in (-1, 3):
            source = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
            if isinstance(source, keras.layers.Conv2D) and len(source._outbound_nodes) == 1:
                folded[source.name] = layer
    if not folded:
        return model
    skipped = {norm.name for norm in folded.values()}

    def clone(layer):
        config = layer.get_config()
        if layer.name in folded:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        return args[0] if layer.name in skipped else layer(*args, **kwargs)

    copy = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in copy.layers:
        if not layer.weights:
            continue  # the input layer (renamed by cloning), pooling, activations
        original = model.get_layer(layer.name)
        if layer.name not in folded:
            layer.set_weights(original.get_weights())
            continue
        norm = folded[layer.name]
        gamma = norm.gamma.numpy() if norm.scale else 1.0
        beta = norm.beta.numpy() if norm.center else 0.0
        mean, variance = norm.moving_mean.numpy(), norm.moving_variance.numpy()
        scale = gamma / np.sqrt(variance + norm.epsilon)
        bias = original.bias.numpy() if original.use_bias else 0.0
        layer.set_weights([original.kernel.numpy() * scale, (bias - mean) * scale + beta])
    return copy


class KerasClassifier:
    """A saved Keras model behind the common ``predict_proba`` interface.

    Predictions run through a traced graph of the model with its batch norms folded: an eager call
    costs ~5 ms and ``model.predict()`` sets up a pipeline per call, where the graph costs ~0.5 ms per
    batch; folding adds about a fifth more images per second.
    """

    def __init__(self, path: Path):
        import_tensorflow_quietly()
        import keras
        import tensorflow as tf

        import digits.augmentation  # noqa: F401  registers Deskew, which deep-cnn-deskew models hold

        self.path = path
        self.model = _load(path, keras.models.load_model)
        self.name = _run_name(path) or self.model.name
        inference = fold_batch_norm(self.model)
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
    """A fitted scikit-learn pipeline (saved with joblib) behind the common ``predict_proba`` interface."""

    def __init__(self, path: Path):
        import joblib

        self.path = path
        self.model = _load(path, joblib.load)
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
    def load(cls, path: Path) -> EnsembleClassifier:
        """Load the members listed in an ensemble folder's ensemble.json."""
        listed = read_json(path)
        members = listed.get("members") if isinstance(listed, dict) else None
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ModelError(f"{path}: not an ensemble file (expected a list of member folders)")
        members = [load_classifier(path.parent / member) for member in members]
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
    return read_run_config(path.parent).get("model")


LOADERS = {".keras": KerasClassifier, ".joblib": SklearnClassifier}
MODEL_FILES = ("model.keras", "model.joblib", "ensemble.json")


def resolve_model_path(model_path: str | os.PathLike | None = None) -> Path:
    """The model to use: the argument, else ``$DIGITS_MODEL``, else the packaged default model."""
    path = Path(model_path or os.environ.get(MODEL_ENV) or DEFAULT_MODEL)
    if not path.exists():
        hint = "name a model: a run or ensemble folder, or a .keras/.joblib file"
        if path == DEFAULT_MODEL:
            hint += " or restore the packaged default model"
        raise DigitsError(f"{path}: no model there; {hint}")
    return path


def load_classifier(path: str | Path):
    """Load a trained model from a run folder, or a ``.keras`` / ``.joblib`` / ``ensemble.json`` file.

    Where the folder holds a ``calibration.json`` (``digits calibrate``), the model answers with
    calibrated probabilities and can say "not a digit".
    """
    classifier = load_uncalibrated(path)
    calibration = Calibration.load(classifier.path.parent)
    return CalibratedClassifier(classifier, calibration) if calibration else classifier


def load_uncalibrated(path: str | Path):
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
        return EnsembleClassifier.load(path)
    if path.suffix not in LOADERS:
        raise ModelError(f"{path}: not a .keras, .joblib or ensemble.json model; pass the run folder instead")
    return LOADERS[path.suffix](path)
