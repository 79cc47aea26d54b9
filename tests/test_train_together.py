"""benchmarks/train_together.py: several seeds trained as branches of one model (here on TensorFlow)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from digits import data as mnist
from digits.models import load_classifier
from digits.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def together():
    environment = dict(os.environ)
    spec = importlib.util.spec_from_file_location("train_together", ROOT / "benchmarks" / "train_together.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Child processes of later tests inherit this environment (a leaked KERAS_BACKEND broke them once).
    assert dict(os.environ) == environment
    return module


def test_each_branch_gets_its_own_distortion_and_a_new_one_every_batch(together):
    configs = [
        TrainConfig(model="fast-cnn", augment=augment, seed=seed).resolved()
        for augment, seed in (("affine", 0), ("affine", 1), ("none", 0))
    ]
    distort = together.Distortions(configs)
    images = np.zeros((4, 28, 28, 1), np.float32)
    images[:, 6:22, 12:16] = 1.0
    first, second = np.asarray(distort(images)), np.asarray(distort(images))
    assert first.shape == (4, 3, 28, 28, 1)
    assert not np.allclose(first[:, 0], first[:, 1])  # two seeds, two random streams
    assert not np.allclose(first[:, 0], second[:, 0])  # the stream moves on between batches
    assert np.array_equal(first[:, 2], images) and np.array_equal(second[:, 2], images)


def test_a_branch_trained_beside_another_ends_as_it_would_alone(together, mnist_dir):
    data = mnist.prepare(mnist_dir, 5000, 0, train_size=256)
    alone = TrainConfig(model="fast-cnn", epochs=1, seed=3, augment="none", train_size=256).resolved()
    beside = TrainConfig(model="fast-cnn", epochs=1, seed=4, augment="affine", train_size=256).resolved()
    solo, *_ = together.fit_group([alone], data, "float32")
    pair, *_ = together.fit_group([alone, beside], data, "float32")
    # Same seed, same batches: the other branch's loss adds nothing to this branch's gradients.
    for a, b in zip(solo[0].get_weights(), pair[0].get_weights(), strict=True):
        assert np.allclose(a, b, atol=1e-5)
    assert not np.allclose(pair[0].get_weights()[0], pair[1].get_weights()[0])


def test_every_branch_becomes_a_run_folder_that_the_project_loads(together, mnist_dir, tmp_path, capsys):
    out = tmp_path / "together"
    args = ["--model", "fast-cnn", "--augment", "affine", "none", "--seeds", "0", "--epochs", "1"]
    args += ["--train-size", "256", "--data-dir", str(mnist_dir), "--out", str(out)]
    summaries = together.main(args)

    assert [row["run"] for row in summaries] == ["fast-cnn-affine-seed0", "fast-cnn-none-seed0"]
    assert json.loads((out / "summary.json").read_text()) == summaries
    data = mnist.prepare(mnist_dir, 5000, 0)
    for row in summaries:
        config = json.loads((out / row["run"] / "config.json").read_text())
        # The project's split, so `digits ensemble` accepts the runs and their validation scores stay clean.
        assert (config["val_size"], config["split_seed"]) == (5000, 0)
        assert config["trained_on"]["precision"] == "float32"
        model = load_classifier(out / row["run"])
        accuracy = float(np.mean(model.predict_proba(data.x_val).argmax(axis=1) == data.y_val))
        # fast-cnn keeps no weight average, so its raw and averaged scores are the saved model's.
        assert row["val_accuracy_raw"] == row["val_accuracy_averaged"] == pytest.approx(accuracy, abs=2e-4)
    assert "group 1: fast-cnn-affine-seed0, fast-cnn-none-seed0" in capsys.readouterr().out

    with pytest.raises(SystemExit):
        together.main(args)
    assert "folder is not empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--group", "0"], "--group must be at least 1"),
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--augment", "blur"], "unknown augmentation 'blur'"),
        (["--data-dir", "/nonexistent"], "/nonexistent: no such folder"),
        (["--seeds", "1", "1"], "name a branch twice: fast-cnn-none-seed1, fast-cnn-none-seed1"),
    ],
)
def test_bad_input_is_one_line_before_any_training(together, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_:
        together.main(["--model", "fast-cnn", "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
