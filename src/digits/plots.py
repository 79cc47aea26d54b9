"""Headless matplotlib figures of a run: learning curves, confusion matrix, misclassified digits."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrix(matrix: list[list[int]], path: Path, title: str = "Confusion matrix") -> None:
    """Counts of true digit (rows) against predicted digit (columns)."""
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    # Log colour scale: the diagonal holds ~1000 per class, the interesting errors a handful.
    image = ax.imshow(matrix + 1, cmap="Blues", norm=matplotlib.colors.LogNorm())
    for (i, j), value in np.ndenumerate(matrix):
        colour = "white" if value > matrix.max() / 4 else "black"
        ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color=colour)
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, label="count + 1")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def misclassified(
    images: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray, path: Path, limit: int = 36
) -> None:
    """A grid of the most confidently wrong test digits, labelled true -> predicted."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:limit]
    cols = 6
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):  # fewer errors than cells
        ax.imshow(images[i].squeeze(), cmap="gray_r")
        ax.set_title(f"{y_true[i]} -> {predicted[i]} ({probabilities[i, predicted[i]]:.0%})", fontsize=9)
    fig.suptitle(f"{len(np.flatnonzero(predicted != y_true))} misclassified test digits (true -> predicted)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
