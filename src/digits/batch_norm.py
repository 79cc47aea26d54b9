"""Batch normalisation after training: statistics re-estimated on clean images once augmented training
ends, and each batch norm folded into the convolution before it for inference."""

from __future__ import annotations

import numpy as np


def _batch_norms(model) -> list:
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_batch_norm(model, images: np.ndarray, seed: int, batches: int = 100, batch_size: int = 256):
    """Re-estimate batch-norm statistics on clean (un-augmented) training images.

    Trained on augmented batches, the moving averages describe distorted digits. The new statistics are
    the plain average over ``batches`` clean batches; the weights are untouched.
    """
    norms = _batch_norms(model)
    momentum = [layer.momentum for layer in norms]
    chosen = np.random.default_rng(seed).permutation(len(images))[: batches * batch_size]
    for n, start in enumerate(range(0, len(chosen), batch_size)):
        for layer in norms:
            layer.momentum = n / (n + 1)  # a cumulative mean: batch n weighs 1/(n+1)
        model(images[chosen[start : start + batch_size]], training=True)
    for layer, value in zip(norms, momentum, strict=True):
        layer.momentum = value


def recalibrate_if_better(model, data, seed: int, log=print) -> None:
    """Recalibrate batch norm on clean images, keeping the new statistics only if validation agrees.

    It matters for deep models: the resnet scored 97.4% on the validation split with the statistics
    of augmented batches and 99.1% once recalibrated; the shallow fast-cnn lost 0.1 point instead.
    A run on all training images (``val_size`` 0) has nothing to judge by and always recalibrates:
    of the six deep-cnn seeds judged on validation, four kept it (up to +0.08 point), two lost 0.02.
    """
    norms = _batch_norms(model)
    if not norms:
        return
    if not len(data.x_val):
        recalibrate_batch_norm(model, data.x_train, seed)
        log("batch-norm statistics recalibrated on clean images (no validation split to judge by)")
        return

    def val_accuracy() -> float:
        predicted = model.predict(data.x_val, batch_size=1024, verbose=0).argmax(axis=1)
        return float(np.mean(predicted == data.y_val))

    saved = [[v.numpy() for v in (layer.moving_mean, layer.moving_variance)] for layer in norms]
    before = val_accuracy()
    recalibrate_batch_norm(model, data.x_train, seed)
    after = val_accuracy()
    if after < before:
        for layer, (mean, variance) in zip(norms, saved, strict=True):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
    kept = "kept" if after >= before else "discarded"
    log(f"batch-norm statistics recalibrated on clean images: validation {before:.2%} -> {after:.2%}, {kept}")


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
