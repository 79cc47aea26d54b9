"""Side-by-side benchmark: train the Keras reference and our models in one run on one machine.

For every model: test accuracy after each epoch against cumulative training seconds, the seconds to
first reach 99.0%, final accuracy and prediction throughput. Writes ``benchmark.json``,
``benchmark.md`` and ``accuracy_vs_seconds.png`` into the output folder, one run folder per model.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from digits import data as mnist
from digits import epochs_text, plots
from digits.inference import DEFAULT_MODEL, KerasClassifier
from digits.report import images_per_second
from digits.runs import check_new_folder, machine, read_history
from digits.training import TrainConfig, train

TARGET = 0.99


class TestAccuracyPerEpoch(keras.callbacks.Callback):
    """Scores the test set after each epoch; runs after the epoch's seconds are recorded."""

    def __init__(self, x_test: np.ndarray, y_test: np.ndarray):
        super().__init__()
        self.x_test, self.y_test, self.accuracy = x_test, y_test, []

    def on_epoch_end(self, epoch, logs=None):
        predicted = self.model.predict(self.x_test, batch_size=1024, verbose=0).argmax(axis=1)
        self.accuracy.append(float(np.mean(predicted == self.y_test)))


def _train_and_score(name: str, config: TrainConfig, run: Path, x_test, y_test, log) -> dict:
    """Train one model, scoring the test set after each epoch; its row of the comparison."""
    scorer = TestAccuracyPerEpoch(x_test, y_test)
    metrics = train(config, run, log=log, callbacks=[scorer])
    seconds = np.cumsum([row["seconds"] for row in read_history(run)]).tolist()
    reached = [s for s, acc in zip(seconds, scorer.accuracy, strict=True) if acc >= TARGET]
    return {
        "model": name,
        "epochs": metrics.epochs,
        "test_accuracy": metrics.test_accuracy,
        "test_r2": metrics.test_r2,
        "train_seconds": metrics.train_seconds,
        "seconds_to_99": reached[0] if reached else None,
        "images_per_second": images_per_second(KerasClassifier(run / "model.keras"), x_test),
        "curve": {"seconds": seconds, "test_accuracy": scorer.accuracy},
    }


def run_benchmark(
    models: list[str],
    out: str | Path,
    data_dir=None,
    seed: int = 0,
    epochs: int | None = None,
    train_size: int | None = None,
    log=print,
) -> list[dict]:
    """Train each model with its default recipe and write the comparison table and plot.

    ``epochs`` and ``train_size`` override every model's recipe, for quick looks; leave them unset
    for the real comparison.
    """
    out = Path(out)
    # Every value is checked before the first model trains, and before the folder exists.
    if len(set(models)) < len(models):
        raise ValueError(f"each model can run once per benchmark, got: {' '.join(models)}")
    configs = [
        TrainConfig(model=name, seed=seed, data_dir=data_dir, epochs=epochs, train_size=train_size)
        for name in models
    ]
    for config in configs:
        config.resolved()
    check_new_folder(out)
    (_, _), (x_test, y_test) = mnist.load_mnist(data_dir)
    x_test = mnist.scale(x_test)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, config in zip(models, configs, strict=True):
        log(f"== {name}")
        rows.append(_train_and_score(name, config, out / name, x_test, y_test, log))
        log(_row_text(rows[-1]))
    # The model that serve and predict use, timed in the same run and through Keras as the rows are.
    default_rate = None
    if DEFAULT_MODEL.with_name("model.keras").is_file():
        default_rate = images_per_second(KerasClassifier(DEFAULT_MODEL.with_name("model.keras")), x_test)
    machine_name = machine()
    overrides = {"epochs": epochs, "train_size": train_size}
    report = {
        "machine": machine_name,
        "overrides": overrides,
        "rows": rows,
        "default_model_images_per_second": default_rate,
    }
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(rows, machine_name, default_rate, overrides)
    (out / "benchmark.md").write_text(table)
    plots.accuracy_vs_seconds(rows, out / "accuracy_vs_seconds.png", TARGET)
    log(f"\n{table}\nwritten to {out}/")
    return rows


def _row_text(row: dict) -> str:
    to_99 = f"after {row['seconds_to_99']:.1f} s" if row["seconds_to_99"] is not None else "not reached"
    return (
        f"{row['model']}: test accuracy {row['test_accuracy']:.2%} after {epochs_text(row['epochs'])}, "
        f"{row['train_seconds']:.0f} s; 99.0% {to_99}; {row['images_per_second']:,.0f} images/s"
    )


def markdown_table(
    rows: list[dict], machine: str, default_rate: float | None = None, overrides: dict | None = None
) -> str:
    """The benchmark as a Markdown table, with the per-epoch test accuracy curve of each model.

    ``overrides`` are the ``epochs`` and ``train_size`` that replaced the recipes, if any: such a
    quick look says so, so that it is not taken for the full comparison.
    """
    flags = " ".join(
        f"--{name.replace('_', '-')} {value}"
        for name, value in (overrides or {}).items()
        if value is not None
    )
    lines = [
        f"Machine: {machine}.",
        *(
            [f"Quick look ({flags}): the recipes were overridden, so this is not the full comparison."]
            if flags
            else []
        ),
        "",
        "| model | epochs | test accuracy | test R² | training s | s to 99.0% | predict images/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        to_99 = f"{row['seconds_to_99']:.1f}" if row["seconds_to_99"] is not None else "not reached"
        lines.append(
            f"| {row['model']} | {row['epochs']} | {row['test_accuracy']:.2%} | {row['test_r2']:.4f} "
            f"| {row['train_seconds']:.1f} | {to_99} | {row['images_per_second']:,.0f} |"
        )
    if default_rate is not None:
        lines += ["", f"Packaged default model (`make default-model`): {default_rate:,.0f} predict images/s."]
    lines += ["", "Test accuracy after each epoch (cumulative training seconds):", ""]
    for row in rows:
        points = zip(row["curve"]["seconds"], row["curve"]["test_accuracy"], strict=True)
        lines.append(f"- {row['model']}: " + ", ".join(f"{a:.2%} ({s:.0f} s)" for s, a in points))
    return "\n".join(lines) + "\n"
