"""Headless matplotlib figures of a run: learning curves, confusion matrix, misclassified digits."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)  # figures left open pile up in long-lived processes


def learning_curves(history: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, training and validation."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, [row[metric] for row in history], "o-", label="train")
        if "val_" + metric in history[0]:
            ax.plot(epochs, [row["val_" + metric] for row in history], "o-", label="validation")
        ax.set(xlabel="epoch", ylabel=metric, title=metric.capitalize())
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def confusion_matrix(matrix: list[list[int]], path: Path) -> None:
    """Counts of true digit (rows) against predicted digit (columns)."""
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    # Log colour scale: the diagonal holds ~1000 per class, the interesting errors a handful.
    image = ax.imshow(matrix + 1, cmap="Blues", norm=matplotlib.colors.LogNorm())
    for (i, j), value in np.ndenumerate(matrix):
        colour = "white" if value > matrix.max() / 4 else "black"
        ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color=colour)
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true", title="Confusion matrix")
    fig.colorbar(image, ax=ax, label="count + 1")
    _save(fig, path)


def test_figures(metrics, images: np.ndarray, y_true: np.ndarray, probabilities, folder: Path) -> None:
    """The confusion matrix and the misclassified digits of a test evaluation, saved in ``folder``."""
    confusion_matrix(metrics.confusion_matrix, folder / "confusion_matrix.png")
    misclassified(images, y_true, probabilities, folder / "misclassified.png")


def misclassified(images: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray, path: Path) -> None:
    """A grid of the 36 most confidently wrong test digits, labelled true -> predicted."""
    predicted = probabilities.argmax(axis=1)
    every_wrong = np.flatnonzero(predicted != y_true)
    wrong = every_wrong[np.argsort(-probabilities[every_wrong, predicted[every_wrong]])][:36]
    cols = 6
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):  # fewer errors than cells
        ax.imshow(images[i].squeeze(), cmap="gray_r")
        ax.set_title(f"{y_true[i]} -> {predicted[i]} ({probabilities[i, predicted[i]]:.0%})", fontsize=9)
    fig.suptitle(f"{len(every_wrong)} misclassified test digits (true -> predicted)")
    _save(fig, path)


def model_comparison(rows: list[dict], path: Path, title: str = "MNIST test set") -> None:
    """Horizontal bars of test accuracy and training time per model, coloured by kind.

    Each row has ``label``, ``kind`` (e.g. "scikit-learn" or "CNN"), ``test_accuracy`` and
    ``train_seconds``.
    """
    labels = [row["label"] for row in rows]
    accuracy = np.array([row["test_accuracy"] for row in rows]) * 100
    seconds = np.array([row["train_seconds"] for row in rows], dtype=float)
    kinds = list(dict.fromkeys(row["kind"] for row in rows))
    colours = [f"C{kinds.index(row['kind'])}" for row in rows]
    y = np.arange(len(rows))

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 1.2 + 0.45 * len(rows)), sharey=True)
    left.barh(y, accuracy, color=colours)
    # Everything scores 90-100%: start the axis near the worst model so the differences show.
    left.set_xlim(max(0.0, np.floor(accuracy.min()) - 1), 100)
    for i, value in enumerate(accuracy):
        left.text(value, i, f"{value:.2f}% ", ha="right", va="center", fontsize=8, color="white")
    left.set(yticks=y, yticklabels=labels, xlabel="test accuracy (%)", title="Accuracy")
    right.barh(y, seconds, color=colours)
    right.set_xscale("log")  # seconds for logistic regression, many minutes for the CNNs
    for i, value in enumerate(seconds):
        right.text(value, i, f" {value:.0f} s", va="center", fontsize=8)
    right.set(xlabel="training time (s, log scale)", title="Training time")
    right.set_xlim(right=seconds.max() * 8)
    left.invert_yaxis()  # the first row on top; the y axis is shared
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    handles = [matplotlib.patches.Patch(color=f"C{i}", label=kind) for i, kind in enumerate(kinds)]
    fig.suptitle(title)
    fig.tight_layout()
    # In the figure's top corner, beside the title, where it cannot hide a bar.
    fig.legend(handles=handles, loc="upper right", ncols=len(kinds), fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def accuracy_vs_seconds(rows: list[dict], path: Path, target: float) -> None:
    """Benchmark curves: test accuracy after each epoch against cumulative training seconds."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in rows:
        curve = row["curve"]
        ax.plot(curve["seconds"], np.array(curve["test_accuracy"]) * 100, "o-", label=row["model"])
    ax.axhline(target * 100, color="gray", linestyle="--", linewidth=1, label=f"{target:.0%}")
    ax.set(xlabel="training seconds", ylabel="test accuracy (%)", title="Test accuracy after each epoch")
    ax.set_ylim(97.5, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
