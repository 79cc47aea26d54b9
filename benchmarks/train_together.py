"""Train several seeds of a zoo model at once on one accelerator (Keras; JAX backend on GPU machines).

One model of 300k parameters cannot keep a GPU busy; a batch step over several at once can. Each
(seed, augmentation) pair is a branch of one Keras model: the branches share only the batch of
images; each sees its own augmented copy of it, drawn by its own augmentation layers (own random
stream), and has its own weights and its own loss. The loss of the whole is their sum, so every branch
trains as ``digits train`` would train it alone (same optimizer, schedule, weight average and label
smoothing, from ``digits.training``), on the same shuffled batches. Branches go in groups, one after
another, and a group starts only if it can end before ``--deadline``.

The distortions run in a jitted function of their own, outside the train step: inside the model,
Keras' image layers made an H100 step take about a second (measured on 2026-11-28).

Every branch becomes a run folder holding ``model.keras`` (weights averaged, if the recipe does) and
``config.json`` on the project's validation split, so ``digits evaluate`` and ``digits ensemble``
take it. ``summary.json`` holds each branch's validation accuracy with its last raw weights and with
the averaged weights (batch-norm statistics as trained). No test image is read.

    KERAS_BACKEND=jax python benchmarks/train_together.py --model deep-cnn --augment affine wide \\
        --seeds 0 1 2 3 --group 4 --out runs/together
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from digits import DigitsError, check_new_folder, write_json
from digits import data as mnist
from digits.augmentation import augmentation
from digits.models import MODELS, build_model
from digits.training import TrainConfig, cpu_name, make_optimizer


def branch_name(config: TrainConfig) -> str:
    return f"{config.model}-{config.augment}-seed{config.seed}"


def device_name() -> str:
    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    return cpu_name()


def build_together(configs: list[TrainConfig], precision: str):
    """One model from (N, branches, 28, 28, 1) images to (N, branches, 10) probabilities."""
    inputs = keras.Input((len(configs), 28, 28, 1))
    members, outputs = [], []
    keras.mixed_precision.set_global_policy(precision)
    for b, config in enumerate(configs):
        keras.utils.set_random_seed(config.seed)  # each member's initial weights and dropout follow its seed
        member = build_model(config.model)
        member.name = branch_name(config)
        members.append(member)
        outputs.append(layers.Reshape((1, 10))(member(inputs[:, b])))
    keras.mixed_precision.set_global_policy("float32")
    together = layers.Concatenate(axis=1)(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, together, name="together"), members


class Distortions:
    """Each branch's augmentation of one batch, stacked: (N, 28, 28, 1) -> (N, branches, 28, 28, 1).

    The layers run statelessly (their random state is passed in and out), so on JAX the whole call is
    one compiled function.
    """

    def __init__(self, configs: list[TrainConfig]):
        self.recipes = []
        for config in configs:
            recipe = None
            if config.augment != "none":
                recipe = augmentation(config.augment, config.seed)
                recipe.build((None, 28, 28, 1))
            self.recipes.append(recipe)
        self.states = [[v.value for v in r.non_trainable_variables] if r else [] for r in self.recipes]
        self.step = self._distort
        if keras.backend.backend() == "jax":
            import jax

            self.step = jax.jit(self._distort)

    def _distort(self, images, states):
        distorted, updated = [], []
        for recipe, state in zip(self.recipes, states, strict=True):
            output = images
            if recipe is not None:
                output, state = recipe.stateless_call([], state, images, training=True)
            distorted.append(output)
            updated.append(state)
        return ops.stack(distorted, axis=1), updated

    def __call__(self, images):
        distorted, self.states = self.step(images, self.states)
        return distorted


def batches(x, y, batch_size: int, distort: Distortions, seed: int):
    """Endless shuffled batches, a new order every epoch, each distorted once per branch."""
    order = np.random.default_rng(seed)
    while True:
        shuffled = order.permutation(len(x))
        for start in range(0, len(x), batch_size):
            chosen = shuffled[start : start + batch_size]
            yield distort(x[chosen]), y[chosen]


def summed_loss(label_smoothing: float):
    """Each branch's cross-entropy against the same one-hot labels, summed over the branches."""

    def loss(y_true, y_pred):
        y_true = ops.broadcast_to(ops.expand_dims(y_true, 1), ops.shape(y_pred))
        per_branch = keras.losses.categorical_crossentropy(y_true, y_pred, label_smoothing=label_smoothing)
        return ops.sum(per_branch, axis=-1)

    return loss


def branch_accuracies(model, x_val, y_val) -> list[float]:
    """Validation accuracy of each branch, on the clean images."""
    branches = model.input_shape[1]
    repeated = np.repeat(x_val[:, None], branches, axis=1)
    predicted = model.predict(repeated, batch_size=1000, verbose=0).reshape(len(x_val), -1, 10).argmax(-1)
    return [float(np.mean(predicted[:, b] == y_val)) for b in range(branches)]


class RawWeightsScore(keras.callbacks.Callback):
    """Prints each epoch; scores every branch after the last epoch, before fit swaps in the average."""

    def __init__(self, data, last_epoch: int):
        super().__init__()
        self.data, self.last_epoch, self.scores = data, last_epoch, None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        print(f"    epoch {epoch + 1}: loss {logs['loss']:.4f}, {seconds:.1f} s", flush=True)
        if epoch == self.last_epoch:
            self.scores = branch_accuracies(self.model, self.data.x_val, self.data.y_val)


def fit_group(configs: list[TrainConfig], data, precision: str):
    """Train one group of branches together; return the members, their scores and the seconds taken.

    The scores are each branch's validation accuracy with its last raw weights and with the weights
    it ends on (the average, where the recipe keeps one).
    """
    keras.backend.clear_session()  # same layer names in every group, so the compiled step is reused
    first = configs[0]
    model, members = build_together(configs, precision)
    steps = int(np.ceil(len(data.x_train) / first.batch_size))
    model.compile(
        optimizer=make_optimizer(first, steps), loss=summed_loss(MODELS[first.model].label_smoothing)
    )
    raw = RawWeightsScore(data, first.epochs - 1)
    labels = np.eye(10, dtype="float32")[data.y_train]
    started = time.perf_counter()
    model.fit(
        batches(data.x_train, labels, first.batch_size, Distortions(configs), first.seed),
        steps_per_epoch=steps,
        epochs=first.epochs,
        shuffle=False,  # the batches come shuffled; Keras would only warn that it cannot
        verbose=0,
        callbacks=[raw],
    )
    seconds = time.perf_counter() - started
    return members, raw.scores, branch_accuracies(model, data.x_val, data.y_val), seconds


def write_runs(configs, members, raw_scores, scores, seconds, out: Path, precision: str) -> list[dict]:
    """Write each branch as a run folder (model.keras, config.json); return their summaries."""
    trained_on = {
        "device": device_name(),
        "backend": f"keras {keras.__version__} on {keras.backend.backend()}",
        "precision": precision,
    }
    summaries = []
    for config, member, raw_score, score in zip(configs, members, raw_scores, scores, strict=True):
        folder = out / branch_name(config)
        folder.mkdir(parents=True)
        saved = build_model(config.model)  # a float32 copy: runs are scored and served on CPUs
        saved.set_weights(member.get_weights())
        saved.save(folder / "model.keras")
        summary = {
            "run": folder.name,
            "val_accuracy_raw": raw_score,
            "val_accuracy_averaged": score,
            "group_seconds": round(seconds, 1),
            "branches_in_group": len(configs),
        }
        write_json(folder / "config.json", {**asdict(config), "trained_on": trained_on, **summary})
        summaries.append(summary)
    return summaries


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="deep-cnn", choices=MODELS)
    parser.add_argument("--augment", nargs="+", help="augmentation recipes to cross with the seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, help="default: the model's")
    parser.add_argument("--group", type=int, default=4, help="branches trained together (default: 4)")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"))
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds from start")
    parser.add_argument("--train-size", type=int, help="train on the first N images (a quick look)")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.group < 1 or not args.deadline > 0:
        parser.error(f"--group must be at least 1 and --deadline positive, got {args.group}, {args.deadline}")
    try:
        check_new_folder(args.out)  # before minutes of training, never over earlier runs
        configs = [
            TrainConfig(
                model=args.model,
                epochs=args.epochs,
                seed=seed,
                augment=augment,
                train_size=args.train_size,
                data_dir=args.data_dir,
            ).resolved()
            for seed in args.seeds
            for augment in args.augment or [MODELS[args.model].augment]
        ]
        names = [branch_name(config) for config in configs]
        if len(set(names)) < len(names):  # two branches would need one run folder, after their training
            parser.error(f"--seeds and --augment name a branch twice: {', '.join(names)}")
        data = mnist.prepare(args.data_dir, configs[0].val_size, configs[0].split_seed, args.train_size)
    except (OSError, ValueError, DigitsError) as exc:
        parser.error(str(exc))
    print(f"{len(configs)} branches of {args.model} on {device_name()}; {len(data.x_train)} training images")

    summaries, last = [], None
    for i in range(0, len(configs), args.group):
        group = configs[i : i + args.group]
        elapsed = time.perf_counter() - start
        if last is not None and elapsed + 1.1 * last > args.deadline:
            print(f"stopping: {elapsed:.0f} s gone, a group takes {last:.0f} s; deadline {args.deadline:g} s")
            break
        print(f"group {i // args.group + 1}: {', '.join(map(branch_name, group))}", flush=True)
        group_start = time.perf_counter()
        summaries += write_runs(group, *fit_group(group, data, args.precision), args.out, args.precision)
        last = time.perf_counter() - group_start
        for row in summaries[-len(group) :]:
            raw, averaged = row["val_accuracy_raw"], row["val_accuracy_averaged"]
            print(f"  {row['run']}: validation {raw:.2%} raw, {averaged:.2%} averaged")
        print(f"  group took {last:.0f} s", flush=True)
        write_json(args.out / "summary.json", summaries)
    return summaries


if __name__ == "__main__":
    main()
