"""Classical machine-learning baselines: scikit-learn pipelines trained and measured like the CNNs.

Every baseline is a scikit-learn :class:`~sklearn.pipeline.Pipeline` that takes flat float images,
shaped (N, 784) in [0, 1], so a fitted one saved as ``model.joblib`` loads through
:func:`digits.models.load_classifier` and works with ``digits evaluate`` and ``digits predict``.
Deskewing, a stateless moment-based shear, is an optional first step shared by all of them.

A run folder ``OUT`` holds ``OUT/<name>/{model.joblib,config.json,metrics.json}`` per model, plus
``results.json``, ``results.md`` and ``results.png`` for all of them side by side with the CNN runs.

The hyperparameters were chosen on the validation split (5,000 images carved from the training set),
never on the test set.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from digits import check_choice, log_stderr, write_json

SIDE = 28
MODEL_FILE = "model.joblib"

# ---------------------------------------------------------------------------- deskewing

# Pixel row and column coordinates, flattened like the images.
_ROWS, _COLS = (grid.ravel().astype(np.float64) for grid in np.mgrid[:SIDE, :SIDE])


def image_moments(images: np.ndarray) -> tuple[np.ndarray, ...]:
    """Centre of mass (row, column), row variance and row-column covariance of each image.

    ``images`` is (N, 784) or (N, 28, 28); blank images get a centre of mass in the middle and zero
    variances.
    """
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    mass = flat.sum(axis=1)
    blank = mass == 0
    mass[blank] = 1.0
    row, col = flat @ _ROWS / mass, flat @ _COLS / mass
    row[blank] = col[blank] = (SIDE - 1) / 2
    row_var = flat @ _ROWS**2 / mass - row**2
    row_col = flat @ (_ROWS * _COLS) / mass - row * col
    return row, col, row_var, row_col


def skew(images: np.ndarray) -> np.ndarray:
    """Slant of each digit: columns moved per row down, from image moments (0 for an upright digit)."""
    _, _, row_var, row_col = image_moments(images)
    return np.divide(row_col, row_var, out=np.zeros_like(row_col), where=row_var > 1e-9)


def deskew(images: np.ndarray) -> np.ndarray:
    """Shear each image so its slant (:func:`skew`) is zero and its centre of mass is the image centre.

    Takes and returns (N, 784) float images; the classic deskewing of LeCun et al. (1998) and of the
    published SVM and k-NN results on MNIST.
    """
    from scipy.ndimage import affine_transform

    images = np.asarray(images, dtype=np.float32)
    row, col, _, _ = image_moments(images)
    slant = skew(images)
    centre = np.array([(SIDE - 1) / 2, (SIDE - 1) / 2])
    out = np.empty_like(images)
    for i, image in enumerate(images.reshape(-1, SIDE, SIDE)):
        # Output pixel p samples input pixel shear @ p + offset; the centre maps to the centre of mass.
        shear = np.array([[1.0, 0.0], [slant[i], 1.0]])
        offset = np.array([row[i], col[i]]) - shear @ centre
        # Bilinear interpolation: unlike splines it cannot overshoot [0, 1].
        out[i] = affine_transform(image, shear, offset=offset, order=1).ravel()
    return out


def deskewer():
    """Deskewing as a stateless pipeline step."""
    from sklearn.preprocessing import FunctionTransformer

    return FunctionTransformer(deskew)


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


def train_one(name: str, data, config: BaselineConfig, out: str | Path, log=log_stderr) -> dict:
    """Fit, measure and save one baseline into ``out/name``; returns its metrics."""
    import joblib

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
    joblib.dump(model, folder / MODEL_FILE)
    run_config = {
        "model": name,
        "kind": "scikit-learn",
        "description": BASELINES[name].description,
        "steps": {step: repr(estimator) for step, estimator in pipeline.steps},
        **{key: value for key, value in asdict(config).items() if key != "models"},
    }
    metrics = {
        "model": name,
        "deskew": config.deskew,
        "train_images": len(x_train),
        "val_accuracy": val["accuracy"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_r2": test["r2"],
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "images_per_second": len(x_test) / predict_seconds,
        "model_bytes": (folder / MODEL_FILE).stat().st_size,
    }
    write_json(folder / "config.json", run_config)
    write_json(folder / "metrics.json", metrics)
    log(
        f"{name}: test accuracy {test['accuracy']:.2%} (validation {val['accuracy']:.2%}), "
        f"predicted in {predict_seconds:.1f} s; saved to {folder}/"
    )
    return metrics


def train_all(config: BaselineConfig, out: str | Path, log=log_stderr) -> list[dict]:
    """Fit every selected baseline into a new ``out`` folder, on one data split; returns their metrics.

    An existing non-empty ``out`` is refused before any work: a new run would leave a stale mix of
    the old run's folders and a report of only the new one.
    """
    from digits import check_new_folder
    from digits import data as mnist

    config.check()
    out = Path(out)
    check_new_folder(out)
    log(f"loading MNIST (validation {config.val_size}, training {config.train_size or 'all the rest'})")
    data = mnist.prepare(config.data_dir, config.val_size, config.seed, config.train_size)
    results = [train_one(name, data, config, out, log) for name in config.models]
    write_json(out / "results.json", results)
    return results


# ---------------------------------------------------------------------------- reports


def _train_images(run: Path) -> int | None:
    """How many images a CNN run trained on, from its config.json (None if it does not say)."""
    from digits import DigitsError
    from digits.data import read_run_config, split_of

    try:
        config = read_run_config(run)
        if not config:
            return None
        return config.get("train_size") or 60000 - split_of(config)[0]
    except (OSError, DigitsError):
        return None


def cnn_runs(runs_dir: str | Path) -> list[dict]:
    """Metrics of the CNN run folders ``runs_dir/*/metrics.json``, with the folder as ``run``."""
    found = []
    for path in sorted(Path(runs_dir).glob("*/metrics.json")):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a run still being written, or not ours
        if isinstance(metrics, dict) and {"model", "test_accuracy", "train_seconds"} <= metrics.keys():
            model_file = path.parent / "model.keras"
            found.append(
                {
                    **metrics,
                    "run": str(path.parent),
                    "train_images": _train_images(path.parent),
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
