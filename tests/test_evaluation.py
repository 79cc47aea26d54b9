"""Metrics on hand-made inputs, R-squared's definition in particular."""

from __future__ import annotations

import numpy as np
import pytest

from digits import evaluation
from digits.data import PreparedData


def test_r_squared_is_one_for_perfect_confident_predictions():
    y = np.arange(10).repeat(3)
    assert evaluation.r_squared(y, evaluation.one_hot(y)) == pytest.approx(1.0)


def test_r_squared_is_zero_for_predicting_the_base_rates():
    y = np.array([0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    base_rates = np.bincount(y, minlength=10) / len(y)
    assert evaluation.r_squared(y, np.tile(base_rates, (len(y), 1))) == pytest.approx(0.0, abs=1e-12)


def test_r_squared_matches_the_formula_averaged_over_classes():
    rng = np.random.default_rng(0)
    y = np.concatenate([np.arange(10), rng.integers(0, 10, size=40)])
    p = rng.dirichlet(np.ones(10), size=len(y))
    t = evaluation.one_hot(y)
    by_hand = np.mean(
        [1 - ((t[:, k] - p[:, k]) ** 2).sum() / ((t[:, k] - t[:, k].mean()) ** 2).sum() for k in range(10)]
    )
    assert evaluation.r_squared(y, p) == pytest.approx(by_hand)


def test_summary_on_a_known_example():
    y = np.array([0, 1, 2, 3])
    p = np.full((4, 10), 0.01)
    p[[0, 1, 2, 3], [0, 1, 2, 5]] = 0.91  # the last prediction is wrong
    result = evaluation.summary(y, p)
    assert result["accuracy"] == 0.75
    assert result["loss"] == pytest.approx(-(3 * np.log(0.91) + np.log(0.01)) / 4)


def test_report_gives_per_class_scores_and_the_confusion_matrix():
    y = np.array([0, 0, 1, 1])
    p = evaluation.one_hot(np.array([0, 1, 1, 1]))
    result = evaluation.report(y, p)
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix[0, 0] == 1 and matrix[0, 1] == 1 and matrix[1, 1] == 2
    assert result["per_class"]["0"]["recall"] == 0.5 and result["per_class"]["1"]["precision"] == 2 / 3


def test_metrics_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="shape"):
        evaluation.summary(np.array([0, 1]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2 labels but 3"):
        evaluation.summary(np.array([0, 1]), np.zeros((3, 10)))


def test_evaluate_says_how_many_images_each_figure_covers():
    class Perfect:
        name = "perfect"

        def predict_proba(self, x):
            return evaluation.one_hot(x[:, 0, 0, 0].astype(int))

    def split(n):
        y = np.arange(n) % 10
        x = np.zeros((n, 28, 28, 1), np.float32)
        x[:, 0, 0, 0] = y  # the label, where Perfect reads it
        return x, y

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = split(20), split(10), split(30)
    data = PreparedData(x_train, y_train, x_val, y_val, x_test, y_test)
    said = []
    result, test_probabilities = evaluation.evaluate(Perfect(), data, log=said.append)
    assert (result.train_images, result.val_images, result.test_images) == (20, 10, 30)
    assert test_probabilities.shape == (30, 10)
    # Progress names each split as its scoring starts (minutes each, for big ensembles).
    assert said == ["scoring 20 training images", "scoring 30 test images", "scoring 10 validation images"]
    text = evaluation.format_text(result)
    assert "train accuracy  100.0000%  (20 images)" in text
    assert "val accuracy    100.0000%  (10 images)" in text
    assert "test accuracy   100.0000%  (30 images)" in text
