"""Training a Keras model on MNIST, with per-epoch atomic checkpoints and resume.

``train`` reads as its steps: settings, data, input pipelines, model, fit, finish (batch-norm
statistics, the saved model, calibration), evaluate. What it writes is described in digits.runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import keras
import numpy as np

from digits import batch_norm, check_choice, devices, evaluation, plots, runs
from digits import data as mnist
from digits.augmentation import augmentation
from digits.inference import KerasClassifier
from digits.models import AUGMENTATIONS, MODELS, STRATEGIES, build_model
from digits.negatives import with_negatives


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

    def run_config(self) -> runs.RunConfig:
        """The run folder's record of this (resolved) config."""
        return runs.RunConfig(
            model=self.model,
            kind="keras",
            val_size=self.val_size,
            split_seed=self.split_seed,
            train_size=self.train_size,
            settings=asdict(self),
            versions=runs.versions(),
            data_sha256=mnist.SHA256,
        )

    @classmethod
    def from_run(cls, recorded: runs.RunConfig) -> TrainConfig:
        """The config a run was started with, from its config.json."""
        values = {f.name: recorded.settings[f.name] for f in fields(cls) if f.name in recorded.settings}
        return cls(**values)


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
    loss = (
        keras.losses.CategoricalCrossentropy(label_smoothing=spec.label_smoothing)
        if _one_hot_targets(config)
        else keras.losses.SparseCategoricalCrossentropy()
    )
    model.compile(optimizer=make_optimizer(config, steps_per_epoch), loss=loss, metrics=["accuracy"])


def _one_hot_targets(config: TrainConfig) -> bool:
    return bool(MODELS[config.model].label_smoothing or config.negatives)


def labels_for(config: TrainConfig, y: np.ndarray) -> np.ndarray:
    """Integer labels, or one-hot where the loss (label smoothing, negatives) needs them."""
    return evaluation.one_hot(y) if _one_hot_targets(config) else y


def calibrate_run(folder: Path, classifier, data, held_out_negatives, seed: int, log=print) -> None:
    """Fit the run's temperature and "not a digit" threshold on validation; write calibration.json.

    ``classifier`` is the run's saved model, loaded (see digits.inference).
    """
    from digits.calibration import fit

    if not len(data.x_val):
        log("not calibrated: no validation split to fit the temperature on")
        return
    calibration = fit(classifier, data.x_val, data.y_val, held_out_negatives, seed)
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


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch, save the model and the history, atomically (see digits.runs)."""

    def __init__(self, folder: Path, history: list[dict]):
        super().__init__()
        self.folder, self.history = folder, history

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self.started, 3)}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.history.append(row)
        _save_model_atomic(self.model, runs.checkpoint_path(self.folder, epoch + 1))
        runs.write_checkpoint_state(self.folder, epoch + 1, self.history)


# ---------------------------------------------------------------------------- the run


def _settings(config: TrainConfig, out: Path, resume: bool) -> TrainConfig:
    """The run's settings: a resumed run's own, else ``config``'s once ``out`` is known to be free."""
    if resume:
        recorded = runs.read_config(out)
        if recorded is None:
            raise FileNotFoundError(f"{out}: no config.json, so nothing to resume")
        if runs.read_metrics(out) is not None:
            raise runs.RunExists(f"{out}: this run already finished (metrics.json exists)")
        if recorded.settings.get("distribute") == "multi-worker":  # each worker would need this folder
            raise ValueError(f"{out}: a multi-worker run cannot be resumed; start it again with a new --out")
        data_dir = config.data_dir or recorded.settings.get("data_dir")
        config = dataclasses.replace(TrainConfig.from_run(recorded), data_dir=data_dir)
    else:
        # Point at --resume only where it can work: a run that started and did not finish.
        unfinished = (out / runs.CONFIG_FILE).is_file() and not (out / runs.METRICS_FILE).is_file()
        hint = f", or continue it with: digits train --resume {out}" if unfinished else ""
        runs.check_new_folder(out, hint)
    return config.resolved()


def _pipelines(config: TrainConfig, data, log):
    """Training and validation tf.data pipelines, and the held-out negatives calibration scores."""
    keras.utils.set_random_seed(config.seed)
    x_train, targets, held_out_negatives = with_negatives(
        config.negatives, config.seed, data.x_train, labels_for(config, data.y_train), log
    )
    train_ds = make_dataset(
        x_train, targets, config.batch_size, shuffle=True, augment=config.augment, seed=config.seed
    )
    val_ds = make_dataset(data.x_val, labels_for(config, data.y_val), 1024) if len(data.x_val) else None
    return train_ds, val_ds, held_out_negatives


def _model(config: TrainConfig, out: Path, train_images: int, strategy, log):
    """A fresh compiled model, or the last checkpoint with its optimizer state; its history so far."""
    with strategy.scope():
        saved = runs.read_checkpoint_state(out)
        if saved:
            checkpoint, epoch, history = saved
            log(f"resuming {out} after epoch {epoch} of {config.epochs}")
            try:
                return keras.models.load_model(checkpoint), history
            except Exception as exc:  # a truncated zip, a file overwritten by something else
                raise runs.damaged_checkpoint(checkpoint, type(exc).__name__) from None
        model = build_model(config.model)
        compile_model(model, config, steps_per_epoch=int(np.ceil(train_images / config.batch_size)))
        return model, []


def _fit(model, config: TrainConfig, out: Path, train_ds, val_ds, history: list[dict], callbacks) -> None:
    """Train up to ``config.epochs``, one progress line per epoch (a bar within each on a terminal)."""
    if len(history) >= config.epochs:
        return
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        initial_epoch=len(history),
        shuffle=False,  # the dataset shuffles itself; Keras would only warn that it cannot
        verbose=1 if sys.stdout.isatty() else 2,
        callbacks=[EpochCheckpoint(out, history), keras.callbacks.TensorBoard(str(out / "logs")), *callbacks],
    )


def _evaluate(config: TrainConfig, out: Path, classifier, data, history: list[dict]) -> runs.RunMetrics:
    """Score the saved model on the training, validation and test images; write metrics and plots."""
    metrics, probabilities = evaluation.evaluate(classifier, data)
    metrics = dataclasses.replace(
        metrics,
        model=config.model,
        epochs=config.epochs,
        train_seconds=round(sum(row["seconds"] for row in history), 2),
    )
    plots.learning_curves(history, out / "learning_curves.png")
    plots.test_figures(metrics, data.x_test, data.y_test, probabilities, out)
    runs.write_metrics(out, metrics)
    return metrics


def train(
    config: TrainConfig, out: str | Path, resume: bool = False, log=print, callbacks=()
) -> runs.RunMetrics:
    """Train (or resume) a run in ``out`` and return its metrics.

    ``callbacks`` are extra Keras callbacks (the benchmark uses one to score each epoch). In a
    multi-worker run every worker trains the one model, and only the chief writes ``out``: the
    others work in a scratch folder they remove.
    """
    out = Path(out)
    if not resume and config.distribute == "multi-worker" and not devices.is_multi_worker_chief():
        with tempfile.TemporaryDirectory(prefix="digits-worker-") as scratch:
            return _train(config, Path(scratch) / "run", False, log, callbacks)
    return _train(config, out, resume, log, callbacks)


def _train(config: TrainConfig, out: Path, resume: bool, log, callbacks) -> runs.RunMetrics:
    """``train``'s steps in ``out``, held from the first check to the end (see runs.claimed)."""
    with runs.claimed(out):
        return _steps(config, out, resume, log, callbacks)


def _steps(config: TrainConfig, out: Path, resume: bool, log, callbacks) -> runs.RunMetrics:
    """Settings, data, pipelines, model, fit, finish, evaluate."""
    config = _settings(config, out, resume)
    strategy = devices.strategy_for(config.distribute)
    if devices.use_mixed_precision_on_gpu():
        log("GPU found: training with mixed precision (float16 compute, float32 weights)")

    # Data: verified, scaled, split; before anything is written, so missing data leaves no folder behind.
    data = mnist.prepare(config.data_dir, config.val_size, config.split_seed, config.train_size)
    log(
        f"data: {len(data.x_train)} train / {len(data.x_val)} validation / {len(data.x_test)} test"
        f" images, checksums verified"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / runs.CHECKPOINTS).mkdir(exist_ok=True)
    if not resume:
        runs.write_config(out, config.run_config())

    train_ds, val_ds, held_out_negatives = _pipelines(config, data, log)
    model, history = _model(config, out, len(data.x_train), strategy, log)
    replicas = f" on {strategy.num_replicas_in_sync} devices" if config.distribute else ""
    log(f"model: {config.model}, {model.count_params():,} parameters{replicas}")
    _fit(model, config, out, train_ds, val_ds, history, callbacks)

    if config.augment != "none":
        with strategy.scope():
            batch_norm.recalibrate_if_better(model, data, config.seed, log)
    _save_model_atomic(_inference_copy(model), out / "model.keras")
    # The saved model, loaded once as inference will run it, for calibration and for the scores.
    saved = KerasClassifier(out / "model.keras")
    calibrate_run(out, saved, data, held_out_negatives, config.seed, log)
    metrics = _evaluate(config, out, saved, data, history)
    runs.remove_checkpoints(out)
    return metrics
