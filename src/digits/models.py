"""The model zoo: Keras architectures by name, their training defaults, and loading saved models.

Every model takes float32 images shaped (N, 28, 28, 1) in [0, 1] and outputs ten class probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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


AUGMENTATIONS = ("none", "affine", "elastic")


def augmentation(kind: str = "affine", seed: int = 0):
    """Random distortions of the kind handwriting has, as Keras preprocessing layers.

    "affine": small rotations, shifts and zooms; "elastic": the same plus elastic distortions, the
    classic trick for MNIST (Simard et al., 2003).
    """
    import keras
    from keras import layers

    if kind not in AUGMENTATIONS[1:]:
        raise ValueError(f"unknown augmentation {kind!r}; choose one of: {', '.join(AUGMENTATIONS)}")
    # Empty pixels outside the digit are black (0), as in MNIST.
    fill = dict(fill_mode="constant", fill_value=0.0)
    steps = [
        layers.RandomRotation(10 / 360, seed=seed, **fill),
        layers.RandomTranslation(0.1, 0.1, seed=seed + 1, **fill),
        layers.RandomZoom(0.1, seed=seed + 2, **fill),
    ]
    if kind == "elastic":
        steps.append(ElasticDistortion(seed=seed + 3))
    return keras.Sequential(steps, name=f"{kind}_augmentation")


def _elastic_layer_class():
    import keras
    from keras import ops

    class ElasticDistortion(keras.layers.Layer):
        """Random elastic distortion (Simard et al., 2003): smooth random displacement fields.

        Keras' own RandomElasticTransform draws both displacement directions from one seed and ties
        their size to their smoothness; this layer keeps the two apart, and warps a whole batch at once.
        ``alpha`` is the displacement scale in pixels per unit of smoothed noise, ``sigma`` the smoothness.
        """

        def __init__(self, alpha: float = 34.0, sigma: float = 4.0, seed: int | None = None, **kwargs):
            super().__init__(**kwargs)
            self.alpha, self.sigma, self.seed = alpha, sigma, seed
            self.seed_generator = keras.random.SeedGenerator(seed)
            radius = int(3 * sigma)
            g = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
            self.kernel = (g / g.sum()).astype("float32")

        def _smooth(self, noise):
            # Separable Gaussian blur of (B, H, W, 2) fields, as two depthwise convolutions.
            k = len(self.kernel)
            rows = np.tile(self.kernel.reshape(k, 1, 1, 1), (1, 1, 2, 1))
            cols = np.tile(self.kernel.reshape(1, k, 1, 1), (1, 1, 2, 1))
            noise = ops.depthwise_conv(noise, rows, padding="same")
            return ops.depthwise_conv(noise, cols, padding="same")

        def call(self, images, training=True):
            if not training:
                return images
            shape = ops.shape(images)
            batch, height, width = shape[0], shape[1], shape[2]
            # Uniform noise in [-1, 1], as in the paper, smoothed, then scaled to pixels.
            noise = keras.random.uniform((batch, height, width, 2), -1.0, 1.0, seed=self.seed_generator)
            displacement = self.alpha * self._smooth(noise)
            ys, xs = ops.meshgrid(
                ops.arange(height, dtype="float32"), ops.arange(width, dtype="float32"), indexing="ij"
            )
            y = ops.clip(ys[None] + displacement[..., 0], 0.0, ops.cast(height - 1, "float32"))
            x = ops.clip(xs[None] + displacement[..., 1], 0.0, ops.cast(width - 1, "float32"))
            return _bilinear(images, y, x)

        def get_config(self):
            return {**super().get_config(), "alpha": self.alpha, "sigma": self.sigma, "seed": self.seed}

    def _bilinear(images, y, x):
        """Sample (B, H, W, C) images at fractional (B, H, W) coordinates."""
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        y0, x0 = ops.floor(y), ops.floor(x)
        wy, wx = (y - y0)[..., None], (x - x0)[..., None]
        y0, x0 = ops.cast(y0, "int32"), ops.cast(x0, "int32")
        y1, x1 = ops.minimum(y0 + 1, height - 1), ops.minimum(x0 + 1, width - 1)
        flat = ops.reshape(images, (-1, shape[3]))
        base = (ops.arange(batch, dtype="int32") * height * width)[:, None, None]

        def at(yy, xx):
            return ops.take(flat, base + yy * width + xx, axis=0)

        top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
        bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
        return top * (1 - wy) + bottom * wy

    return ElasticDistortion


def ElasticDistortion(**kwargs):  # noqa: N802 - stands in for the class, built on first use
    """A random elastic distortion layer (see ``_elastic_layer_class``)."""
    return _elastic_layer_class()(**kwargs)


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
    """Time-to-accuracy on a CPU: as cheap per image as the Keras example, but batch-normalised."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(28, 28, 1))
    x = _conv_bn_relu(inputs, 32, padding="valid")
    x = layers.MaxPooling2D()(x)
    x = _conv_bn_relu(x, 64, padding="valid")
    x = layers.MaxPooling2D()(x)
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
    """A small residual network for 28x28 inputs: stem, then residual stages at 14x14 and 7x7."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(28, 28, 1))
    x = _conv_bn_relu(inputs, 32)
    x = layers.MaxPooling2D()(x)  # 14x14
    x = _residual_block(x, 48)
    x = _residual_block(x, 48)
    x = layers.MaxPooling2D()(x)  # 7x7
    x = _residual_block(x, 96)
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
        "batch-normalised CNN built for time to 99% on a CPU (one-cycle schedule, label smoothing)",
        epochs=2,
        batch_size=256,
        learning_rate=4e-3,
        warmup_epochs=0.3,
        label_smoothing=0.1,
        augment="none",
    ),
    "resnet": ModelSpec(
        resnet,
        "small residual network (stem + 4 residual blocks, 48/96 channels), elastic augmentation",
        epochs=20,
        batch_size=128,
        learning_rate=3e-3,
        warmup_epochs=1.0,
        label_smoothing=0.1,
        augment="elastic",
    ),
    "densenet": ModelSpec(
        densenet,
        "small densely connected network (two dense blocks, growth 16/24), elastic augmentation",
        epochs=20,
        batch_size=128,
        learning_rate=3e-3,
        warmup_epochs=1.0,
        label_smoothing=0.1,
        augment="elastic",
    ),
}


def build_model(name: str):
    """A fresh, uncompiled Keras model for a registered architecture."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name].build()


class KerasClassifier:
    """A saved Keras model behind the common ``predict_proba`` interface."""

    def __init__(self, path: Path):
        import keras

        self.path = path
        self.model = keras.models.load_model(path)
        self.name = _run_name(path) or self.model.name

    def predict_proba(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities for images shaped (N, 28, 28, 1) in [0, 1]."""
        if len(x) <= batch_size:
            # Calling the model directly skips predict()'s per-call set-up: much faster for one image.
            return np.asarray(self.model(x, training=False))
        return self.model.predict(x, batch_size=batch_size, verbose=0)


class SklearnClassifier:
    """A fitted scikit-learn pipeline (saved with joblib) behind the common ``predict_proba`` interface."""

    def __init__(self, path: Path):
        import joblib

        self.path = path
        self.model = joblib.load(path)
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
