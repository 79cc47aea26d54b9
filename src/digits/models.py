"""The model zoo: Keras architectures by name, their training defaults, and loading saved models.

Every model takes float32 images shaped (N, 28, 28, 1) in [0, 1] and outputs ten class probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits import DigitsError

#: Augmentation recipes a model or ``digits train --augment`` can name (see digits.augmentation).
AUGMENTATIONS = ("none", "affine", "elastic")
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
    #: Default augmentation recipe: "none", "affine" or "elastic" (affine plus elastic distortions).
    augment: str = "affine"


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


def fast_cnn():
    """Time-to-accuracy on a CPU: strided convolutions shrink the image early, batch norm trains fast.

    Conv 5x5/2 (14x14) -> Conv 3x3/2 (7x7) -> Conv 3x3 (5x5) -> Dense: about the Keras example's cost
    per image, but three batch-normalised convolutions reach 99% in far fewer steps.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(28, 28, 1))
    x = _conv_bn_relu(inputs, 32, kernel=5, strides=2)
    x = _conv_bn_relu(x, 64, strides=2)
    x = _conv_bn_relu(x, 128, padding="valid")
    x = layers.Flatten()(x)
    return keras.Model(inputs, _classifier_head(x), name="fast_cnn")


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
        "strided, batch-normalised CNN built for time to 99% on a CPU (one-cycle, label smoothing)",
        epochs=2,
        batch_size=128,
        learning_rate=3e-3,
        warmup_epochs=0.3,
        label_smoothing=0.1,
        augment="none",
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
}


def build_model(name: str):
    """A fresh, uncompiled Keras model for a registered architecture."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name].build()


class ModelError(DigitsError):
    """A model file that cannot be loaded; the message names the file."""


def _load(path: Path, loader):
    """Call ``loader(path)``, turning any failure into a one-line ModelError naming the file."""
    try:
        return loader(path)
    except Exception as exc:  # Keras and pickle raise many types for a damaged file
        raise ModelError(f"{path}: not a readable model file ({type(exc).__name__})") from None


class KerasClassifier:
    """A saved Keras model behind the common ``predict_proba`` interface."""

    def __init__(self, path: Path):
        import keras
        import tensorflow as tf

        self.path = path
        self.model = _load(path, keras.models.load_model)
        self.name = _run_name(path) or self.model.name
        # A traced graph costs ~0.5 ms per small batch where an eager model call costs ~5 ms and
        # predict()'s per-call set-up more: this is what the server and `digits predict` use.
        self._small_batch = tf.function(
            lambda x: self.model(x, training=False),
            input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)],
        )

    def predict_proba(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities for images shaped (N, 28, 28, 1) in [0, 1]."""
        if len(x) <= batch_size:
            return self._small_batch(np.asarray(x, dtype=np.float32)).numpy()
        return self.model.predict(x, batch_size=batch_size, verbose=0)


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

    def __init__(self, members: list, path: Path | None = None):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members, self.path = members, path
        self.name = "ensemble(" + ", ".join(m.name for m in members) + ")"

    @classmethod
    def load(cls, path: Path) -> EnsembleClassifier:
        """Load the members listed in an ensemble folder's ensemble.json."""
        listed = json.loads(path.read_text())
        members = [load_classifier(path.parent / member) for member in listed["members"]]
        return cls([ShiftTTA(m) if listed.get("tta") else m for m in members], path)

    def predict_proba(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """The members' mean class probabilities."""
        return np.mean([m.predict_proba(x, batch_size) for m in self.members], axis=0)


def _run_name(path: Path) -> str | None:
    """The model name recorded in the run's config.json, when there is one."""
    config = path.parent / "config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("model")
    return None


LOADERS = {".keras": KerasClassifier, ".joblib": SklearnClassifier, ".json": EnsembleClassifier.load}
MODEL_FILES = ("model.keras", "model.joblib", "ensemble.json")


def load_classifier(path: str | Path):
    """Load a trained model from a run folder, or a ``.keras`` / ``.joblib`` / ``ensemble.json`` file."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in MODEL_FILES if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{path}: no {', '.join(MODEL_FILES)} in this folder")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file or run folder")
    if path.suffix not in LOADERS:
        raise ValueError(f"{path}: not a .keras, .joblib or ensemble.json model")
    return LOADERS[path.suffix](path)
