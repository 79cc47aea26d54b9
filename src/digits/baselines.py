"""Classical machine-learning baselines: scikit-learn pipelines trained and measured like the CNNs.

Every baseline is a scikit-learn :class:`~sklearn.pipeline.Pipeline` that takes flat float images,
shaped (N, 784) in [0, 1], so a fitted one saved as ``model.skops`` loads through
:func:`digits.inference.load_classifier` and works with ``digits evaluate`` and ``digits predict``.
Deskewing, a stateless moment-based shear, is an optional first step shared by all of them.

A run folder ``OUT`` holds ``OUT/<name>/{model.skops,config.json,metrics.json}`` per model, plus
``results.json``, ``results.md`` and ``results.png`` for all of them side by side with the CNN runs.

The hyperparameters were chosen on the validation split (5,000 images carved from the training set),
never on the test set.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digits import check_choice, log_stderr, runs, write_json
from digits.deskew import deskewer

MODEL_FILE = "model.skops"

# ---------------------------------------------------------------------------- the models


@dataclass(frozen=True)
class BaselineSpec:
    """A baseline: a function of the seed returning its pipeline steps, and a one-line description."""

    steps: Callable[[int], list]
    description: str


# Hyperparameters: the best validation accuracy (raw and deskewed images, 55,000 training images)
# among a few candidates each; the candidates and their scores are in the README.


def _logreg(seed: int) -> list:
    from sklearn.linear_model import LogisticRegression

    # lbfgs converges in 190-260 iterations at C=1.
    return [("logreg", LogisticRegression(C=1.0, max_iter=500))]


def _knn(seed: int) -> list:
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    # PCA drops pixel noise and makes the distance computations 13 times cheaper.
    return [
        ("pca", PCA(60, random_state=seed)),
        ("knn", KNeighborsClassifier(4, weights="distance", n_jobs=-1)),
    ]


def _svm(seed: int) -> list:
    from sklearn.decomposition import PCA
    from sklearn.svm import SVC

    # No probability=True: libsvm would add a five-fold cross-validation, five more fits; fit()
    # calibrates the decision function on the validation split instead.
    return [("pca", PCA(50, random_state=seed)), ("svm", SVC(C=10, gamma=0.05, cache_size=2000))]


def _rf(seed: int) -> list:
    from sklearn.ensemble import RandomForestClassifier

    return [("rf", RandomForestClassifier(200, n_jobs=-1, random_state=seed))]


def _mlp(seed: int) -> list:
    from sklearn.neural_network import MLPClassifier

    return [("mlp", MLPClassifier((512,), alpha=1e-4, batch_size=128, max_iter=20, random_state=seed))]


BASELINES: dict[str, BaselineSpec] = {
    "logreg": BaselineSpec(_logreg, "multinomial logistic regression on the 784 pixels (L2, C=1)"),
    "knn": BaselineSpec(_knn, "k-nearest neighbours (k=4, distance-weighted) on 60 PCA components"),
    "svm": BaselineSpec(_svm, "RBF support-vector machine (C=10, gamma=0.05) on 50 PCA components"),
    "rf": BaselineSpec(_rf, "random forest of 200 fully grown trees"),
    "mlp": BaselineSpec(_mlp, "multi-layer perceptron: 512 ReLU units, 20 epochs of Adam"),
}


def check_models(names: list[str]) -> None:
    """Raise ValueError naming the first unknown baseline."""
    for name in names:
        check_choice("baseline", name, BASELINES)


def build_pipeline(name: str, deskew: bool = False, seed: int = 0):
    """A fresh, unfitted pipeline for a registered baseline, optionally deskewing first."""
    from sklearn.pipeline import Pipeline

    check_models([name])
    steps = BASELINES[name].steps(seed)
    return Pipeline([("deskew", deskewer()), *steps] if deskew else steps)


# ---------------------------------------------------------------------------- fitting and measuring


@contextmanager
def heartbeat(label: str, log: Callable[[str], None], every: float = 30.0):
    """Log ``label: N s`` every ``every`` seconds while the body runs (long fits print nothing)."""
    start = time.perf_counter()
    done = threading.Event()

    def tick():
        while not done.wait(every):
            log(f"  {label}: {time.perf_counter() - start:.0f} s so far")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def fit(pipeline, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray):
    """Fit a pipeline on flat images; returns an estimator with ``predict_proba``.

    A pipeline without probabilities (the SVM) gets temperature scaling of its decision function,
    fitted on the validation split: a single parameter, so the predicted class does not change.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.frozen import FrozenEstimator

    with warnings.catch_warnings():
        # The MLP's epoch cap is deliberate: its validation accuracy had levelled off.
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(x_train, y_train)
    if hasattr(pipeline, "predict_proba"):
        return pipeline
    return CalibratedClassifierCV(FrozenEstimator(pipeline), method="temperature").fit(x_val, y_val)


@dataclass
class BaselineConfig:
    """What to train and on which data."""

    models: list[str] = field(default_factory=lambda: list(BASELINES))
    deskew: bool = False
    train_size: int | None = None
    val_size: int = 5000
    seed: int = 0
    data_dir: str | None = None

    def check(self) -> None:
        """Raise ValueError for unknown or repeated models, a bad seed or an unusable training size."""
        from digits.data import check_seed

        if not self.models:
            raise ValueError("no baselines selected")
        check_models(self.models)
        if len(set(self.models)) < len(self.models):
            raise ValueError(f"each baseline can run once, got: {' '.join(self.models)}")
        check_seed("--seed", self.seed)
        if self.train_size is not None and not 100 <= self.train_size <= 60000 - self.val_size:
            raise ValueError(
                f"--train-size must be between 100 and {60000 - self.val_size}, got {self.train_size}"
            )


def _flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1)


def _record(folder: Path, name: str, pipeline, config: BaselineConfig, row: dict) -> None:
    """Write the baseline's config.json and metrics.json (see digits.runs)."""
    settings = {
        "description": BASELINES[name].description,
        "steps": {step: repr(estimator) for step, estimator in pipeline.steps},
        "deskew": config.deskew,
        "seed": config.seed,
    }
    runs.write_config(
        folder,
        runs.RunConfig(name, "scikit-learn", config.val_size, config.seed, config.train_size, settings),
    )
    extra = {key: row[key] for key in ("deskew", "predict_seconds", "images_per_second", "model_bytes")}
    runs.write_metrics(
        folder,
        runs.RunMetrics(
            name,
            row["test_accuracy"],
            row["test_loss"],
            row["test_r2"],
            row["test_images"],
            row["train_images"],
            row["val_images"],
            val_accuracy=row["val_accuracy"],
            train_seconds=row["train_seconds"],
            extra=extra,
        ),
    )


def train_one(name: str, data, config: BaselineConfig, out: str | Path, log=log_stderr) -> dict:
    """Fit, measure and save one baseline into ``out/name``; returns its metrics."""
    import skops.io

    from digits.evaluation import summary

    pipeline = build_pipeline(name, config.deskew, config.seed)
    x_train, x_val, x_test = _flat(data.x_train), _flat(data.x_val), _flat(data.x_test)
    log(f"{name}: fitting on {len(x_train)} images ({BASELINES[name].description})")
    start = time.perf_counter()
    with heartbeat(f"{name} fitting", log):
        model = fit(pipeline, x_train, data.y_train, x_val, data.y_val)
    train_seconds = time.perf_counter() - start
    log(f"{name}: fitted in {train_seconds:.1f} s; predicting the {len(x_test)} test images")

    val = summary(data.y_val, model.predict_proba(x_val))
    start = time.perf_counter()
    with heartbeat(f"{name} predicting", log):
        probabilities = model.predict_proba(x_test)
    predict_seconds = time.perf_counter() - start
    test = summary(data.y_test, probabilities)

    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    skops.io.dump(model, folder / MODEL_FILE)
    row = {
        "model": name,
        "deskew": config.deskew,
        "train_images": len(x_train),
        "val_images": len(x_val),
        "test_images": len(x_test),
        "val_accuracy": val["accuracy"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_r2": test["r2"],
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "images_per_second": len(x_test) / predict_seconds,
        "model_bytes": (folder / MODEL_FILE).stat().st_size,
    }
    _record(folder, name, pipeline, config, row)
    log(
        f"{name}: test accuracy {test['accuracy']:.2%} (validation {val['accuracy']:.2%}), "
        f"predicted in {predict_seconds:.1f} s; saved to {folder}/"
    )
    return row


def train_all(config: BaselineConfig, out: str | Path, log=log_stderr) -> list[dict]:
    """Fit every selected baseline into a new ``out`` folder, on one data split; returns their metrics.

    An existing non-empty ``out`` is refused before any work: a new run would leave a stale mix of
    the old run's folders and a report of only the new one.
    """
    from digits import data as mnist

    config.check()
    out = Path(out)
    runs.check_new_folder(out)
    log(f"loading MNIST (validation {config.val_size}, training {config.train_size or 'all the rest'})")
    data = mnist.prepare(config.data_dir, config.val_size, config.seed, config.train_size)
    results = [train_one(name, data, config, out, log) for name in config.models]
    write_json(out / "results.json", results)
    return results


# ---------------------------------------------------------------------------- reports


def cnn_runs(runs_dir: str | Path) -> list[dict]:
    """The finished Keras runs in ``runs_dir`` as report rows, with the folder as ``run``."""
    found = []
    for folder, config, metrics in runs.finished_runs(runs_dir):
        if config is None or config.kind != "keras":
            continue
        model_file = folder / "model.keras"
        found.append(
            {
                "model": metrics.model,
                "test_accuracy": metrics.test_accuracy,
                "test_r2": metrics.test_r2,
                "val_accuracy": metrics.val_accuracy,
                "train_seconds": metrics.train_seconds,
                "run": str(folder),
                "train_images": config.train_images,
                "model_bytes": model_file.stat().st_size if model_file.is_file() else None,
            }
        )
    return found


def _megabytes(size: int | None) -> str:
    return "—" if size is None else f"{size / 1e6:.3g}"


def format_table(results: list[dict]) -> str:
    """The baselines' metrics as an aligned plain-text table."""
    header = (
        f"{'model':<8} {'deskew':>6} {'train':>6} {'val acc':>8} {'test acc':>9} {'test R2':>8}"
        f" {'train s':>8} {'images/s':>9} {'size MB':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r['model']:<8} {'yes' if r['deskew'] else 'no':>6} {r['train_images']:>6} "
            f"{r['val_accuracy']:>8.2%} {r['test_accuracy']:>9.2%} {r['test_r2']:>8.4f} "
            f"{r['train_seconds']:>8.1f} {r['images_per_second']:>9.0f} {_megabytes(r['model_bytes']):>8}"
        )
    return "\n".join(lines)


def markdown_table(results: list[dict], cnns: list[dict] = ()) -> str:
    """The baselines, then the CNN runs, as a Markdown table (blank cells where a run did not record it)."""
    lines = [
        "| Model | Kind | Deskew | Train images | Val accuracy | Test accuracy | Test R² | Train s"
        " | Predict images/s | Size MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | scikit-learn: {BASELINES[r['model']].description} | "
            f"{'yes' if r['deskew'] else 'no'} | {r['train_images']:,} | {r['val_accuracy']:.2%} | "
            f"{r['test_accuracy']:.2%} | {r['test_r2']:.4f} | {r['train_seconds']:.1f} | "
            f"{r['images_per_second']:,.0f} | {_megabytes(r['model_bytes'])} |"
        )
    for r in cnns:
        val = f"{r['val_accuracy']:.2%}" if r.get("val_accuracy") is not None else "—"
        r2 = f"{r['test_r2']:.4f}" if r.get("test_r2") is not None else "—"
        images = f"{r['train_images']:,}" if r.get("train_images") is not None else "—"
        lines.append(
            f"| {r['model']} | CNN ({r['run']}) | no | {images} | {val} | {r['test_accuracy']:.2%} | {r2} | "
            f"{r['train_seconds']:.1f} | — | {_megabytes(r['model_bytes'])} |"
        )
    return "\n".join(lines) + "\n"


def write_report(results: list[dict], out: str | Path, runs_dir: str | Path = "runs") -> list[Path]:
    """Write ``results.md`` and the bar chart ``results.png`` into ``out``, with the CNNs in ``runs_dir``."""
    from digits import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cnns = cnn_runs(runs_dir)
    (out / "results.md").write_text(markdown_table(results, cnns), encoding="utf-8")
    rows = [
        {**r, "label": r["model"] + (" (deskewed)" if r["deskew"] else ""), "kind": "scikit-learn"}
        for r in results
    ]
    rows += [{**r, "label": f"{r['model']} ({Path(r['run']).name})", "kind": "CNN"} for r in cnns]
    plots.model_comparison(rows, out / "results.png", title=f"MNIST test set ({out.name})")
    return [out / "results.md", out / "results.png"]
