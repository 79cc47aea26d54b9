"""Training a Keras model on MNIST, with per-epoch atomic checkpoints and resume.

A run folder holds, when training ends: ``model.keras``, ``metrics.json``, ``history.csv``,
``config.json``, ``logs/`` (TensorBoard) and the plots. While training, ``checkpoints/`` holds the
last completed epoch; ``train(..., resume=True)`` continues from it.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import keras
import numpy as np

from digits import DigitsError, check_choice, check_new_folder, evaluation, plots, read_json, write_json
from digits import data as mnist
from digits.augmentation import augmentation
from digits.models import AUGMENTATIONS, MODELS, STRATEGIES, KerasClassifier, build_model, load_classifier


@dataclass
class TrainConfig:
    """Every setting of a training run. ``None`` means the model's own default (see ``digits models``)."""

    model: str = "seed-cnn"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    seed: int = 0
    split_seed: int = 0
    augment: str | None = None
    val_size: int = 5000
    train_size: int | None = None
    data_dir: str | None = None
    distribute: str | None = None
    teacher: str | None = None
    #: Momentum of the weight average Adam keeps (Keras' ``use_ema``); 0 trains without one.
    ema_momentum: float | None = None
    #: Generated non-digit images added to the training set with uniform targets (outlier exposure,
    #: see digits.negatives), so the model learns to say "not a digit"; 0 adds none.
    negatives: int = 0

    def resolved(self) -> TrainConfig:
        """A copy with the model's defaults filled in and every value checked."""
        check_choice("model", self.model, MODELS)
        spec = MODELS[self.model]
        config = TrainConfig(**asdict(self))
        config.epochs = spec.epochs if config.epochs is None else config.epochs
        config.batch_size = spec.batch_size if config.batch_size is None else config.batch_size
        if config.learning_rate is None:
            config.learning_rate = spec.learning_rate
        config.augment = spec.augment if config.augment is None else config.augment
        if config.ema_momentum is None:
            config.ema_momentum = spec.ema_momentum
        if not 0 <= config.ema_momentum < 1:
            raise ValueError(f"ema_momentum must be at least 0 and below 1, got {config.ema_momentum}")
        check_choice("augmentation", config.augment, AUGMENTATIONS)
        if config.distribute is not None:
            check_choice("distribution strategy", config.distribute, STRATEGIES)
        # Upper bounds far past any real run, so a typo fails here and not inside TensorFlow.
        for name, most in (("epochs", 10000), ("batch_size", 60000)):
            if getattr(config, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")
            if getattr(config, name) > most:
                raise ValueError(f"{name} must be at most {most}, got {getattr(config, name)}")
        mnist.check_seed("seed", config.seed)
        rate = config.learning_rate
        if not (math.isfinite(rate) and 0 < rate <= 10):
            raise ValueError(f"learning_rate must be positive, finite and at most 10, got {rate}")
        mnist.check_split(config.val_size, config.split_seed, config.train_size)
        if not 0 <= config.negatives <= 60000:
            raise ValueError(f"negatives must be between 0 and 60000, got {config.negatives}")
        return config

    @classmethod
    def from_dict(cls, values: dict, path: str | Path = "the run config") -> TrainConfig:
        """Rebuild a config from a run's config.json (``path``, for messages), ignoring its extra keys."""
        val_size, split_seed = mnist.split_of(values, path)  # also reads runs from before split_seed
        values = {**values, "val_size": val_size, "split_seed": split_seed}
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


class RunExists(DigitsError):
    """The output folder already holds a run; refuse to overwrite it."""


# ---------------------------------------------------------------------------- small file helpers


def _write_history(path: Path, history: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in history for key in row))
    with open(path.with_name(path.name + ".tmp"), "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(history)
    os.replace(path.with_name(path.name + ".tmp"), path)


def _save_model_atomic(model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)  # Keras insists on the .keras suffix
    model.save(tmp)
    os.replace(tmp, path)


def _inference_copy(model):
    """``model`` with its weights and without its optimizer, for the finished run's model.keras.

    Resuming uses the checkpoints, which keep the optimizer; a finished model is only run, and Adam's
    two moment estimates per weight would triple its file.
    """
    copy = model.__class__.from_config(model.get_config())  # clone_model would compile it again
    copy.set_weights(model.get_weights())
    return copy


# ---------------------------------------------------------------------------- the pieces of a run


def cpu_name() -> str:
    """The processor's model name where Linux tells it, else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a run's numbers."""
    import sklearn
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "machine": f"{cpu_name()}, {os.cpu_count()} CPUs",
    }


def make_dataset(x, y, batch_size: int, shuffle: bool = False, augment: str = "none", seed: int = 0):
    """A batched, prefetching tf.data pipeline; augmentation runs on the fly, overlapped with training."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment != "none":
        distort = augmentation(augment, seed)
        # Sequential map: parallel calls would draw from the random state in a varying order, and
        # prefetch already overlaps augmentation with training.
        ds = ds.map(lambda images, labels: (distort(images, training=True), labels))
    return ds.prefetch(tf.data.AUTOTUNE)


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
    """Adam with the model's learning-rate schedule, and its weight average if it keeps one."""
    spec = MODELS[config.model]
    learning_rate = config.learning_rate
    if spec.schedule == "cosine":
        total = config.epochs * steps_per_epoch
        warmup = min(int(spec.warmup_epochs * steps_per_epoch), total - 1)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate / 10 if warmup else config.learning_rate,
            decay_steps=total - warmup,
            alpha=0.01,
            warmup_target=config.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    ema = {"use_ema": True, "ema_momentum": config.ema_momentum} if config.ema_momentum else {}
    return keras.optimizers.Adam(learning_rate, **ema)


def compile_model(model, config: TrainConfig, steps_per_epoch: int) -> None:
    """The model's optimizer (``make_optimizer``) and loss."""
    spec = MODELS[config.model]
    # A teacher's probabilities are soft targets already; smoothing them again would blur its advice.
    loss = (
        keras.losses.CategoricalCrossentropy(label_smoothing=0.0 if config.teacher else spec.label_smoothing)
        if _one_hot_targets(config)
        else keras.losses.SparseCategoricalCrossentropy()
    )
    model.compile(optimizer=make_optimizer(config, steps_per_epoch), loss=loss, metrics=["accuracy"])


def strategy_for(config: TrainConfig):
    """The tf.distribute strategy for ``config.distribute``.

    "mirrored": MirroredStrategy over every GPU, or over two logical CPUs without one; "multi-worker":
    MultiWorkerMirroredStrategy across the machines that the ``TF_CONFIG`` environment variable names.
    Must run before TensorFlow starts its runtime, since logical devices cannot be added afterwards.
    """
    import tensorflow as tf

    if config.distribute is None:
        return tf.distribute.get_strategy()  # the default, single-device strategy
    if config.distribute == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        except RuntimeError:
            pass  # the runtime already started (e.g. a second run in one process): use what exists
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _batch_norms(model) -> list:
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


def use_mixed_precision_on_gpu() -> bool:
    """float16 compute on GPUs, where it is faster; CPUs stay in float32, where it is not."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
        return True
    return False


def _one_hot_targets(config: TrainConfig) -> bool:
    return bool(MODELS[config.model].label_smoothing or config.teacher or config.negatives)


def labels_for(config: TrainConfig, y: np.ndarray) -> np.ndarray:
    """Integer labels, or one-hot where the loss (label smoothing, a teacher, negatives) needs them."""
    return evaluation.one_hot(y) if _one_hot_targets(config) else y


#: Held out from the generated negatives to report how many the calibrated model turns away.
HELD_OUT_NEGATIVES = 1000


def add_negatives(config: TrainConfig, x: np.ndarray, targets: np.ndarray, log=print):
    """The training images and targets with ``config.negatives`` non-digits added (uniform targets),
    and the held-out negatives that calibration scores."""
    from digits.negatives import training_negatives

    if not config.negatives:
        return x, targets, None
    log(f"generating {config.negatives + HELD_OUT_NEGATIVES:,} non-digit images (outlier exposure)")
    negatives = training_negatives(config.negatives + HELD_OUT_NEGATIVES, config.seed)
    used, held_out = negatives[: config.negatives], negatives[config.negatives :]
    uniform = np.full((len(used), targets.shape[1]), 1.0 / targets.shape[1], dtype=np.float32)
    return np.concatenate([x, used]), np.concatenate([targets, uniform]), held_out


def calibrate_run(folder: Path, data, held_out_negatives, seed: int, log=print) -> None:
    """Fit the run's temperature and "not a digit" threshold on validation; write calibration.json."""
    from digits.calibration import fit

    if not len(data.x_val):
        log("not calibrated: no validation split to fit the temperature on")
        return
    calibration = fit(
        KerasClassifier(folder / "model.keras"), data.x_val, data.y_val, held_out_negatives, seed
    )
    calibration.save(folder)
    fitted = calibration.fitted_on
    negatives = (
        f", {fitted['negatives_rejected']:.1%} of held-out negatives turned away"
        if "negatives_rejected" in fitted
        else ""
    )
    log(
        f"calibrated: temperature {calibration.temperature:.3f}, not a digit below"
        f" {calibration.not_a_digit_below:.3f} ({fitted['clean_digits_rejected']:.2%} of clean validation"
        f" digits{negatives})"
    )


def load_teacher(config: TrainConfig):
    """The trained model or ensemble named by ``config.teacher``, checked against the run's split.

    Its validation score stays clean only if the teacher never saw the run's validation images, i.e.
    it was trained beside the same split; a run on all images (``val_size`` 0) may learn from any.
    """
    teacher = load_classifier(config.teacher)
    recorded = mnist.read_run_config(teacher.path.parent)
    split = mnist.split_of(recorded, teacher.path.parent / "config.json")
    if config.val_size and not recorded:
        raise ValueError(
            f"teacher {config.teacher} has no config.json beside it to say which images it was trained on,"
            " so it may have seen this run's validation images; name its run folder, or train on all"
            " images (--val-size 0)"
        )
    if config.val_size and split != (config.val_size, config.split_seed):
        raise ValueError(
            f"teacher {config.teacher} was trained beside the validation split (val_size, split_seed) ="
            f" {split}, not this run's {(config.val_size, config.split_seed)}, so it has seen some of this"
            " run's validation images; train the student with the teacher's --val-size and --split-seed"
        )
    return teacher


def distillation_targets(teacher, data, log=print) -> np.ndarray:
    """The teacher's class probabilities for the training images: the student's targets.

    Knowledge distillation (Hinton et al., 2015): the probabilities say which other digits an image
    resembles, which one-hot labels cannot. They are read from the clean images and kept for each
    image's augmented copies.
    """
    probabilities = teacher.predict_proba(data.x_train).astype(np.float32)
    agree = float(np.mean(probabilities.argmax(axis=1) == data.y_train))
    log(f"teacher {teacher.path.parent}: {agree:.2%} agreement with the training labels it replaces")
    return probabilities


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch, save the model and the history, atomically."""

    def __init__(self, folder: Path, history: list[dict]):
        super().__init__()
        self.folder, self.history = folder, history

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self.started, 3)}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.history.append(row)
        name = f"checkpoint-{epoch + 1:03d}.keras"
        _save_model_atomic(self.model, self.folder / "checkpoints" / name)
        # state.json names the newest complete checkpoint and is replaced only after that file
        # exists, so a kill at any moment leaves a consistent pair.
        state = {"epoch": epoch + 1, "checkpoint": name, "history": self.history}
        write_json(self.folder / "checkpoints" / "state.json", state)
        _write_history(self.folder / "history.csv", self.history)
        for old in (self.folder / "checkpoints").glob("checkpoint-*.keras"):
            if old.name != name:
                old.unlink()


# ---------------------------------------------------------------------------- the run


def train(config: TrainConfig, out: str | Path, resume: bool = False, log=print, callbacks=()) -> dict:
    """Train (or resume) a run in ``out`` and return its metrics.

    ``callbacks`` are extra Keras callbacks (the benchmark uses one to score each epoch).
    """
    out = Path(out)
    state_file = out / "checkpoints" / "state.json"
    if resume:
        if not (out / "config.json").is_file():
            raise FileNotFoundError(f"{out}: no config.json, so nothing to resume")
        if (out / "metrics.json").is_file():
            raise RunExists(f"{out}: this run already finished (metrics.json exists)")
        saved = mnist.read_run_config(out)
        values = {**saved, "data_dir": config.data_dir or saved.get("data_dir")}
        config = TrainConfig.from_dict(values, out / "config.json")
    else:
        # Point at --resume only where it can work: a run that started and did not finish.
        unfinished = (out / "config.json").is_file() and not (out / "metrics.json").is_file()
        check_new_folder(out, f", or continue it with: digits train --resume {out}" if unfinished else "")
    config = config.resolved()
    strategy = strategy_for(config)
    teacher = load_teacher(config) if config.teacher else None  # after the strategy sets up devices
    if use_mixed_precision_on_gpu():
        log("GPU found: training with mixed precision (float16 compute, float32 weights)")

    # 1. Data: verified, scaled, split; before the run folder exists, so missing data leaves none behind.
    data = mnist.prepare(config.data_dir, config.val_size, config.split_seed, config.train_size)
    log(
        f"data: {len(data.x_train)} train / {len(data.x_val)} validation / {len(data.x_test)} test"
        f" images, checksums verified"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    write_json(
        out / "config.json",
        {**asdict(config), "versions": versions(), "data_sha256": mnist.SHA256},
    )

    # 2. Input pipelines.
    keras.utils.set_random_seed(config.seed)
    targets = distillation_targets(teacher, data, log) if teacher else labels_for(config, data.y_train)
    x_train, targets, held_out_negatives = add_negatives(config, data.x_train, targets, log)
    train_ds = make_dataset(
        x_train,
        targets,
        config.batch_size,
        shuffle=True,
        augment=config.augment,
        seed=config.seed,
    )
    val_ds = None
    if len(data.x_val):
        val_ds = make_dataset(data.x_val, labels_for(config, data.y_val), 1024)

    # 3. Model: fresh, or the last checkpoint with its optimizer state; on every device of the strategy.
    history: list[dict] = []
    initial_epoch = 0
    with strategy.scope():
        if resume and state_file.is_file():
            state = read_json(state_file)
            model = keras.models.load_model(out / "checkpoints" / state["checkpoint"])
            history, initial_epoch = state["history"], state["epoch"]
            log(f"resuming {out} after epoch {initial_epoch} of {config.epochs}")
        else:
            model = build_model(config.model)
            steps = int(np.ceil(len(data.x_train) / config.batch_size))
            compile_model(model, config, steps_per_epoch=steps)
    devices = f" on {strategy.num_replicas_in_sync} devices" if config.distribute else ""
    log(f"model: {config.model}, {model.count_params():,} parameters{devices}")

    # 4. Fit, one progress line per epoch (a bar within each epoch on a terminal).
    if initial_epoch < config.epochs:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            shuffle=False,  # the dataset shuffles itself; Keras would only warn that it cannot
            verbose=1 if sys.stdout.isatty() else 2,
            callbacks=[
                EpochCheckpoint(out, history),
                keras.callbacks.TensorBoard(str(out / "logs")),
                *callbacks,
            ],
        )
    if config.augment != "none":
        with strategy.scope():
            recalibrate_if_better(model, data, config.seed, log)
    _save_model_atomic(_inference_copy(model), out / "model.keras")
    calibrate_run(out, data, held_out_negatives, config.seed, log)

    # 5. Evaluate on the training and test images, write metrics and plots.
    result = evaluation.evaluate(KerasClassifier(out / "model.keras"), data)
    probabilities = result.pop("test_probabilities")
    metrics = {
        "model": config.model,
        "epochs": config.epochs,
        **result,
        "train_seconds": round(sum(row["seconds"] for row in history), 2),
    }
    plots.learning_curves(history, out / "learning_curves.png")
    plots.test_figures(metrics, data.x_test, data.y_test, probabilities, out)
    write_json(out / "metrics.json", metrics)
    for leftover in (out / "checkpoints").iterdir():
        leftover.unlink()
    (out / "checkpoints").rmdir()
    return metrics
