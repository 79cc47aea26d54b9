"""Real training on MNIST: one short run with its outputs, evaluate/predict on it, kill and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from digits import data
from digits.cli import main
from digits.training import TrainConfig, train


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, mnist_dir):
    """Two epochs on a 10,000-image subset: the suite's one real training run."""
    out = tmp_path_factory.mktemp("runs") / "seed"
    config = TrainConfig(epochs=2, train_size=10000, data_dir=str(mnist_dir))
    return out, train(config, out, log=lambda *_: None)


@pytest.mark.slow
def test_short_training_beats_95_percent_on_the_test_set(short_run):
    _, metrics = short_run
    assert metrics.test_accuracy > 0.95
    assert metrics.test_r2 > 0.85
    assert metrics.train_seconds > 0


@pytest.mark.slow
def test_a_run_folder_holds_everything_the_docs_promise(short_run):
    out, metrics = short_run
    for name in ("model.keras", "metrics.json", "history.csv", "config.json"):
        assert (out / name).is_file(), name
    for name in ("learning_curves.png", "confusion_matrix.png", "misclassified.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert any((out / "logs").rglob("events.out.tfevents.*"))
    assert not (out / "checkpoints").exists()
    # The finished model is for prediction: no optimizer state (the checkpoints kept it for resume).
    assert getattr(keras.models.load_model(out / "model.keras"), "optimizer", None) is None
    saved = json.loads((out / "metrics.json").read_text())
    for key in (
        "model",
        "epochs",
        "train_accuracy",
        "test_accuracy",
        "test_r2",
        "test_loss",
        "train_seconds",
    ):
        assert key in saved
    assert saved["test_accuracy"] == metrics.test_accuracy
    recorded = json.loads((out / "config.json").read_text())
    config = recorded["settings"]
    assert config["epochs"] == 2 and config["batch_size"] == 64 and config["augment"] == "affine"
    assert recorded["data_sha256"] == data.SHA256 and recorded["versions"]["keras"].startswith("3.")
    assert recorded["kind"] == "keras" and recorded["schema_version"] == 1
    history = (out / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,seconds") and len(history) == 3


@pytest.mark.slow
def test_evaluate_reproduces_the_runs_test_metrics(short_run, capsys, mnist_dir):
    out, metrics = short_run
    assert main(["evaluate", str(out), "--json", "--data-dir", str(mnist_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_accuracy"] == pytest.approx(metrics.test_accuracy)
    # The same split as in training (seed and size from config.json), so the same validation score.
    assert result["val_accuracy"] == pytest.approx(metrics.val_accuracy) and result["val_accuracy"] > 0.9
    assert result["val_loss"] == pytest.approx(metrics.val_loss, rel=1e-4) and result["val_loss"] < 1.0
    assert np.array(result["confusion_matrix"]).sum() == 10000


@pytest.mark.slow
def test_predict_reads_test_digits_from_npy_and_png(short_run, capsys, tmp_path, mnist_dir):
    from PIL import Image

    out, _ = short_run
    (_, _), (x_test, y_test) = data.load_mnist(mnist_dir)
    np.save(tmp_path / "digit.npy", x_test[0])
    Image.fromarray(255 - x_test[1]).resize((112, 112)).save(tmp_path / "digit.png")  # dark on light
    assert (
        main(["predict", str(out), str(tmp_path / "digit.npy"), str(tmp_path / "digit.png"), "--json"]) == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["digit"] for row in rows] == [int(y_test[0]), int(y_test[1])]
    assert all(len(row["probabilities"]) == 10 and 0 < row["confidence"] <= 1 for row in rows)


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), 0.0])
def test_a_learning_rate_that_is_not_a_positive_number_is_refused(rate):
    with pytest.raises(ValueError, match="learning_rate must be positive, finite and at most 10"):
        TrainConfig(learning_rate=rate).resolved()


@pytest.mark.slow
def test_same_seed_same_result(tmp_path, mnist_dir):
    config = TrainConfig(epochs=1, train_size=2000, val_size=500, data_dir=str(mnist_dir))
    first = train(config, tmp_path / "a", log=lambda *_: None)
    second = train(config, tmp_path / "b", log=lambda *_: None)
    assert second.test_loss == pytest.approx(first.test_loss, rel=1e-4)
    assert abs(second.test_accuracy - first.test_accuracy) <= 0.0005


# Run in a child process that kills itself with SIGKILL a few batches into epoch 2: no chance to
# clean up, as hard as a power cut, and at the same point however loaded the machine is.
POWER_CUT = """
import os, signal, sys
import keras
from digits.training import TrainConfig, train

class PowerCut(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 5:
            os.kill(os.getpid(), signal.SIGKILL)

config = TrainConfig(epochs=3, train_size=3000, data_dir=sys.argv[2])
train(config, sys.argv[1], log=lambda *_: None, callbacks=[PowerCut()])
"""


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, mnist_dir):
    out = tmp_path / "run"
    child = subprocess.run([sys.executable, "-c", POWER_CUT, str(out), str(mnist_dir)], timeout=300)
    assert child.returncode == -signal.SIGKILL
    saved = json.loads((out / "checkpoints" / "state.json").read_text())
    assert saved["epoch"] == 1 and (out / "checkpoints" / saved["checkpoint"]).is_file()
    assert not (out / "metrics.json").exists()

    assert main(["train", "--resume", str(out), "--data-dir", str(mnist_dir)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    history = (out / "history.csv").read_text().splitlines()
    assert metrics["epochs"] == 3 and len(history) == 4  # header + one row per epoch, none repeated
    assert [int(row.split(",")[0]) for row in history[1:]] == [1, 2, 3]
