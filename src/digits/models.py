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
    label_smoothing: float = 0.0


def augmentation(seed: int = 0):
    """Random affine distortions of the kind handwriting has: small rotations, shifts and zooms."""
    import keras
    from keras import layers

    # Empty pixels outside the digit are black (0), as in MNIST.
    fill = dict(fill_mode="constant", fill_value=0.0)
    return keras.Sequential(
        [
            layers.RandomRotation(10 / 360, seed=seed, **fill),
            layers.RandomTranslation(0.1, 0.1, seed=seed + 1, **fill),
            layers.RandomZoom(0.1, seed=seed + 2, **fill),
        ],
        name="augmentation",
    )


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
            layers.Dense(10, activation="softmax"),
        ],
        name="seed_cnn",
    )


MODELS: dict[str, ModelSpec] = {
    "seed-cnn": ModelSpec(
        seed_cnn,
        "the seed system's 5-layer Sequential CNN (Conv32-Pool-Conv64-Pool-Dense128-Dense10)",
        epochs=15,
        batch_size=64,
        learning_rate=3e-3,
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


def _run_name(path: Path) -> str | None:
    """The model name recorded in the run's config.json, when there is one."""
    config = path.parent / "config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("model")
    return None


LOADERS = {".keras": KerasClassifier, ".joblib": SklearnClassifier}
MODEL_FILES = tuple(f"model{suffix}" for suffix in LOADERS)


def load_classifier(path: str | Path):
    """Load a trained model from a run directory or a ``.keras`` / ``.joblib`` file."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in MODEL_FILES if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{path}: no {' or '.join(MODEL_FILES)} in this folder")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file or run folder")
    if path.suffix not in LOADERS:
        raise ValueError(f"{path}: not a .keras or .joblib model")
    return LOADERS[path.suffix](path)
