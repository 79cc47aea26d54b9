"""Metrics for a classifier's predicted probabilities: accuracy, loss, R-squared, per-class report."""

from __future__ import annotations

import numpy as np
from sklearn import metrics

from digits.runs import RunMetrics

CLASSES = list(range(10))


def one_hot(y: np.ndarray) -> np.ndarray:
    """Integer labels -> one-hot float matrix of ten columns."""
    return np.eye(len(CLASSES), dtype=np.float32)[np.asarray(y)]


def r_squared(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Coefficient of determination between one-hot labels and predicted probabilities.

    sklearn's ``r2_score`` with the uniform average over the ten class columns: 1.0 for perfect,
    confident predictions, 0.0 for always predicting each class's base rate.
    """
    return float(metrics.r2_score(one_hot(y_true), probabilities, multioutput="uniform_average"))


def _check(y_true: np.ndarray, probabilities: np.ndarray) -> None:
    if probabilities.ndim != 2 or probabilities.shape[1] != 10:
        raise ValueError(f"expected probabilities of shape (N, 10), got {probabilities.shape}")
    if len(y_true) != len(probabilities):
        raise ValueError(f"{len(y_true)} labels but {len(probabilities)} predictions")


def _clip_rows(probabilities: np.ndarray) -> np.ndarray:
    """Keep exact zeros (k-NN, forests) from making the log loss infinite; rows still sum to one."""
    clipped = np.clip(probabilities, 1e-7, 1.0)
    return clipped / clipped.sum(axis=1, keepdims=True)


def summary(y_true: np.ndarray, probabilities: np.ndarray) -> dict:
    """Accuracy, log loss and R-squared of predictions against labels."""
    _check(y_true, probabilities)
    return {
        "accuracy": float(metrics.accuracy_score(y_true, probabilities.argmax(axis=1))),
        "loss": float(metrics.log_loss(y_true, _clip_rows(probabilities), labels=CLASSES)),
        "r2": r_squared(y_true, probabilities),
    }


def report(y_true: np.ndarray, probabilities: np.ndarray) -> dict:
    """Per-class precision/recall/F1 and the confusion matrix."""
    _check(y_true, probabilities)
    predicted = probabilities.argmax(axis=1)
    return {
        "per_class": metrics.classification_report(
            y_true, predicted, labels=CLASSES, output_dict=True, zero_division=0
        ),
        "confusion_matrix": metrics.confusion_matrix(y_true, predicted, labels=CLASSES).tolist(),
    }


def evaluate(classifier, data, log=None) -> tuple[RunMetrics, np.ndarray]:
    """A classifier's train, validation and test metrics on prepared data, and its test probabilities.

    ``log``, if given, hears which images are being scored (the train split alone takes minutes for
    large models and ensembles).
    """

    def predict(split: str, x: np.ndarray) -> np.ndarray:
        if log:
            log(f"scoring {len(x):,} {split} images")
        return classifier.predict_proba(x)

    train, test = summary(data.y_train, predict("training", data.x_train)), predict("test", data.x_test)
    # What to compare models and settings by (accuracy, then log loss to break ties); the test
    # figures are for the final report.
    val = summary(data.y_val, predict("validation", data.x_val)) if len(data.x_val) else {}
    scored = summary(data.y_test, test)
    metrics = RunMetrics(
        model=classifier.name,
        test_accuracy=scored["accuracy"],
        test_loss=scored["loss"],
        test_r2=scored["r2"],
        # A run trained on a subset is scored on that subset, so say how many images each figure covers.
        test_images=len(data.y_test),
        train_images=len(data.y_train),
        val_images=len(data.y_val),
        train_accuracy=train["accuracy"],
        train_loss=train["loss"],
        train_r2=train["r2"],
        val_accuracy=val.get("accuracy"),
        val_loss=val.get("loss"),
        **report(data.y_test, test),
    )
    return metrics, test


def format_text(metrics: RunMetrics) -> str:
    """A human-readable block of the headline metrics and the per-class report."""
    m = metrics
    lines = [
        f"model           {m.model}",
        f"train accuracy  {m.train_accuracy:.4%}  ({m.train_images:,} images)",
        *([f"val accuracy    {m.val_accuracy:.4%}  ({m.val_images:,} images)"] if m.val_images else []),
        *([f"val loss        {m.val_loss:.4f}"] if m.val_loss is not None else []),
        f"test accuracy   {m.test_accuracy:.4%}  ({m.test_images:,} images)",
        f"test loss       {m.test_loss:.4f}",
        f"test R-squared  {m.test_r2:.4f}",
        "",
        "class  precision  recall  f1-score  support",
    ]
    for c in CLASSES:
        row = m.per_class[str(c)]
        lines.append(
            f"{c:>5}  {row['precision']:>9.4f}  {row['recall']:>6.4f}  {row['f1-score']:>8.4f}"
            f"  {int(row['support']):>7}"
        )
    lines += ["", "confusion matrix (rows: true digit, columns: predicted)"]
    lines += [" ".join(f"{v:>5}" for v in row) for row in m.confusion_matrix]
    return "\n".join(lines)
