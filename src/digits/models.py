"""The model zoo: Keras architectures by name and the training recipe of each (loading is digits.inference).

Every model takes float32 images shaped (N, 28, 28, 1) in [0, 1] and outputs ten class probabilities.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from digits import check_choice

#: Augmentation recipes a model or ``digits train --augment`` can name (see digits.augmentation).
AUGMENTATIONS = ("none", "affine", "elastic", "wide", "handwriting")
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


def seed_cnn(hidden: int | None = 128, name: str = "seed_cnn"):
    """The seed system's 5-layer CNN: two convolution + pooling stages, two dense layers, dropout.

    Without ``hidden`` (keras-example) it is the classic Keras MNIST example, the reference to beat:
    the pooled features go through 50% dropout straight to the output. ``mnist_cnn.py`` builds the
    seed CNN in plain sight, as its lesson.
    """
    import keras
    from keras import layers

    head = (
        [layers.Dropout(0.25), layers.Dense(hidden, activation="relu"), layers.Dropout(0.5)] if hidden else []
    )
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            *(head or [layers.Dropout(0.5)]),
            layers.Dense(10, activation="softmax", dtype="float32"),
        ],
        name=name,
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


def deep_cnn():
    """Seven batch-normalised convolutions with learned (strided) downsampling and dropout, for accuracy.

    The design Chris Deotte arrived at by ablation on Kaggle's MNIST: 32C3-32C3-32C5S2, 64C3-64C3-64C5S2,
    128C4, each stage followed by 40% dropout; about nine times fast-cnn's arithmetic per image.
    """
    import keras

    inputs = keras.Input(shape=(28, 28, 1))
    return keras.Model(inputs, _classifier_head(deep_cnn_features(inputs)), name="deep_cnn")


def deep_cnn_features(inputs):
    """deep-cnn's convolutions and dropout over ``inputs`` 28 px high (of any width), flattened: what
    its classifier reads. The pair model (``digits.pairs``) reads a 28x56 input through them too."""
    from keras import layers

    x = inputs
    for filters in (32, 64):
        x = _conv_bn_relu(x, filters, padding="valid")
        x = _conv_bn_relu(x, filters, padding="valid")
        x = _conv_bn_relu(x, filters, kernel=5, strides=2)
        x = layers.Dropout(0.4)(x)
    x = _conv_bn_relu(x, 128, kernel=4, padding="valid")  # 4 rows -> 1 (28x28: 4x4 -> 1x1)
    return layers.Dropout(0.4)(layers.Flatten()(x))


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


#: The schedule of the models built for accuracy: a linear warm-up over the first epoch, then cosine
#: decay; label smoothing keeps them from growing over-confident.
_ONE_CYCLE = dict(warmup_epochs=1.0, label_smoothing=0.1)
#: resnet's and densenet's recipe: longer, with elastic distortions.
_ACCURACY_RECIPE = dict(epochs=15, learning_rate=3e-3, augment="elastic", **_ONE_CYCLE)

MODELS: dict[str, ModelSpec] = {
    "seed-cnn": ModelSpec(
        seed_cnn,
        "the seed system's 5-layer Sequential CNN (Conv32-Pool-Conv64-Pool-Dense128-Dense10)",
        epochs=15,
        batch_size=64,
        learning_rate=3e-3,
    ),
    "keras-example": ModelSpec(
        functools.partial(seed_cnn, None, "keras_example"),
        "the classic Keras example, the reference (Adam 1e-3 constant, batch 128, no augmentation)",
        epochs=15,
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
        learning_rate=3e-3,
        label_smoothing=0.1,
        augment="handwriting",
    ),
    "deep-cnn": ModelSpec(
        deep_cnn,
        "seven batch-normalised convolutions with dropout (Deotte's design), the most accurate single model",
        epochs=24,
        learning_rate=2e-3,
        augment="affine",
        **_ONE_CYCLE,
    ),
    "m5": ModelSpec(
        m5,
        "An et al.'s M5: five unpadded 5x5 convolutions, 32-160 channels, batch norm; for GPUs",
        epochs=30,
        learning_rate=1e-3,
        augment="wide",
        ema_momentum=0.999,
        **_ONE_CYCLE,
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
    check_choice("model", name, MODELS)
    return MODELS[name].build()
