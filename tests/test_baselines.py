"""The scikit-learn baselines: deskewing, every pipeline's fit and predictions, metrics, saving, the CLI."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from digits import baselines, deskew, runs
from digits.cli import main
from digits.data import PreparedData
from digits.inference import load_classifier


def slanted_stroke(slope: float, column: float = 12.0) -> np.ndarray:
    """A 28x28 image of a thick line whose column moves ``slope`` pixels per row down."""
    image = np.zeros((28, 28), dtype=np.float32)
    for row in range(4, 24):
        centre = column + slope * (row - 4)
        image[row, int(round(centre)) - 1 : int(round(centre)) + 2] = 1.0
    return image


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten fixed random sparse templates, one per class, plus noise: images (n, 28, 28, 1), labels."""
    templates = np.random.default_rng(123).random((10, 28, 28)) < 0.15
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = 0.8 * templates[y] + 0.2 * rng.random((n, 28, 28))
    return x.astype(np.float32)[..., np.newaxis], y


@pytest.fixture(scope="module")
def tiny() -> PreparedData:
    x_train, y_train = synthetic(300, 1)
    x_val, y_val = synthetic(100, 2)
    x_test, y_test = synthetic(200, 3)
    return PreparedData(x_train, y_train, x_val, y_val, x_test, y_test)


def flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1)


# ---------------------------------------------------------------------------- deskewing


def test_skew_measures_the_slant_of_a_stroke():
    strokes = np.stack([slanted_stroke(s) for s in (-0.3, 0.0, 0.4)])
    assert deskew.skew(strokes) == pytest.approx([-0.3, 0.0, 0.4], abs=0.03)


def test_deskew_straightens_a_slanted_stroke_and_centres_it():
    stroke = slanted_stroke(0.4).reshape(1, -1)
    straightened = deskew.deskew(stroke)
    assert straightened.shape == (1, 784) and straightened.dtype == np.float32
    assert abs(deskew.skew(straightened)[0]) < 0.03
    row, col, _, _ = deskew.image_moments(straightened)
    assert row[0] == pytest.approx(13.5, abs=0.3) and col[0] == pytest.approx(13.5, abs=0.3)
    # The ink is moved, not lost, and stays in [0, 1].
    assert straightened.sum() == pytest.approx(stroke.sum(), rel=0.05)
    assert 0.0 <= straightened.min() and straightened.max() <= 1.0


def test_deskew_leaves_blank_images_blank():
    assert not np.any(deskew.deskew(np.zeros((2, 784), dtype=np.float32)))


# ---------------------------------------------------------------------------- the pipelines


@pytest.mark.parametrize("deskew", [False, True], ids=["raw", "deskewed"])
@pytest.mark.parametrize("name", list(baselines.BASELINES))
def test_every_baseline_fits_and_predicts_probabilities(tiny, name, deskew):
    pipeline = baselines.build_pipeline(name, deskew=deskew)
    assert ("deskew" in pipeline.named_steps) == deskew
    model = baselines.fit(pipeline, flat(tiny.x_train), tiny.y_train, flat(tiny.x_val), tiny.y_val)
    probabilities = model.predict_proba(flat(tiny.x_test))
    assert probabilities.shape == (len(tiny.x_test), 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0) and probabilities.min() >= 0.0
    # Ten well-separated templates: every model must learn them.
    assert np.mean(probabilities.argmax(axis=1) == tiny.y_test) > 0.9


def test_unknown_baseline_and_bad_train_size_are_value_errors():
    with pytest.raises(ValueError, match="unknown baseline 'nope'.*logreg"):
        baselines.build_pipeline("nope")
    with pytest.raises(ValueError, match="--train-size must be between 100 and 55000"):
        baselines.BaselineConfig(models=["logreg"], train_size=5).check()
    with pytest.raises(ValueError, match="no baselines"):
        baselines.BaselineConfig(models=[]).check()
    with pytest.raises(ValueError, match="each baseline can run once, got: logreg knn logreg"):
        baselines.BaselineConfig(models=["logreg", "knn", "logreg"]).check()
    with pytest.raises(ValueError, match="--seed must be between 0 and 4294967295, got -1"):
        baselines.BaselineConfig(models=["logreg"], seed=-1).check()


def test_heartbeat_reports_while_the_body_runs():
    messages = []
    with baselines.heartbeat("svm fitting", messages.append, every=0.02):
        time.sleep(0.1)
    assert messages and all(m.startswith("  svm fitting: ") for m in messages)


# ---------------------------------------------------------------------------- metrics and saving


def test_train_one_measures_saves_and_reloads(tiny, tmp_path):
    config = baselines.BaselineConfig(models=["svm"], deskew=True)
    logged = []
    metrics = baselines.train_one("svm", tiny, config, tmp_path, logged.append)

    assert metrics["model"] == "svm" and metrics["deskew"] is True and metrics["train_images"] == 300
    for key in ("val_accuracy", "test_accuracy"):
        assert 0.9 < metrics[key] <= 1.0
    assert 0.0 < metrics["test_r2"] <= 1.0 and metrics["test_loss"] > 0.0
    assert metrics["train_seconds"] > 0.0 and metrics["images_per_second"] > 0.0
    folder = tmp_path / "svm"
    assert metrics["model_bytes"] == (folder / "model.skops").stat().st_size
    saved = runs.read_metrics(folder)
    assert (saved.model, saved.test_accuracy, saved.val_accuracy) == (
        "svm",
        metrics["test_accuracy"],
        metrics["val_accuracy"],
    )
    assert saved.extra["images_per_second"] == metrics["images_per_second"]
    recorded = runs.read_config(folder)
    assert (recorded.model, recorded.kind, recorded.split) == ("svm", "scikit-learn", (5000, 0))
    assert recorded.settings["deskew"] is True and recorded.settings["seed"] == 0
    assert any("fitting on 300 images" in line for line in logged)

    # The saved model is usable like a Keras run: images shaped (N, 28, 28, 1), the same predictions.
    classifier = load_classifier(folder)
    assert classifier.name == "svm"
    probabilities = classifier.predict_proba(tiny.x_test)
    assert probabilities.shape == (200, 10)
    assert np.mean(probabilities.argmax(axis=1) == tiny.y_test) == metrics["test_accuracy"]


def test_report_tables_and_chart_include_the_cnn_runs(tmp_path):
    result = {
        "model": "knn",
        "deskew": False,
        "train_images": 55000,
        "val_accuracy": 0.98,
        "test_accuracy": 0.975,
        "test_loss": 0.1,
        "test_r2": 0.95,
        "train_seconds": 12.0,
        "predict_seconds": 4.0,
        "images_per_second": 2500.0,
        "model_bytes": 23_000_000,
    }
    runs_dir = tmp_path / "runs"
    (runs_dir / "cnn-run").mkdir(parents=True)
    runs.write_config(runs_dir / "cnn-run", runs.RunConfig("seed-cnn", "keras", 5000, 0, train_size=2000))
    metrics = runs.RunMetrics("seed-cnn", 0.993, 0.03, 0.988, 10000, 2000, train_seconds=360)
    runs.write_metrics(runs_dir / "cnn-run", metrics)
    (runs_dir / "old-run").mkdir()  # a run of an older schema: left out
    (runs_dir / "old-run" / "metrics.json").write_text(
        json.dumps({"model": "fast-cnn", "test_accuracy": 0.99, "train_seconds": 60})
    )
    (runs_dir / "unfinished").mkdir()
    (runs_dir / "unfinished" / "metrics.json").write_text("{")
    out = tmp_path / "out"
    out.mkdir()

    written = baselines.write_report([result], out, runs_dir)

    assert [path.name for path in written] == ["results.md", "results.png"]
    table = (out / "results.md").read_text().splitlines()
    assert len(table) == 4  # header, rule, the baseline, the CNN
    assert table[2].startswith("| knn |") and "97.50%" in table[2] and "| 23 |" in table[2]
    assert (
        table[3].startswith(f"| seed-cnn | CNN ({runs_dir / 'cnn-run'}) | no | 2,000 |")
        and "99.30%" in table[3]
    )
    assert (out / "results.png").stat().st_size > 10_000
    text = baselines.format_table([result])
    assert "knn" in text and "97.50%" in text and "2500" in text


# ---------------------------------------------------------------------------- the command line


def test_cli_rejects_an_unknown_model_in_one_line(capsys, tmp_path):
    code = main(["baselines", "--models", "nope", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("digits: error: unknown baseline 'nope'") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_trains_evaluates_and_predicts_on_real_digits(capsys, tmp_path, mnist_dir):
    out = tmp_path / "out"
    data_dir = ["--data-dir", str(mnist_dir)]
    argv = ["baselines", "--models", "logreg", "--train-size", "500", "--json", "--out", str(out)]
    code = main([*argv, "--cnn-runs", str(tmp_path / "no-runs"), *data_dir])
    captured = capsys.readouterr()
    assert code == 0
    (result,) = json.loads(captured.out)  # progress goes to stderr, so stdout is pure JSON
    assert result["model"] == "logreg" and result["train_images"] == 500
    assert 0.8 < result["test_accuracy"] < 1.0 and 0.5 < result["test_r2"] < 1.0
    assert "logreg: fitted in" in captured.err
    assert {p.name for p in out.iterdir()} == {"logreg", "results.json", "results.md", "results.png"}

    # `digits evaluate` on the run folder reproduces the test accuracy.
    assert main(["evaluate", str(out / "logreg"), "--json", *data_dir]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["model"] == "logreg"
    assert evaluated["test_accuracy"] == pytest.approx(result["test_accuracy"])

    # `digits predict` reads a digit from a file with it.
    from digits.data import load_mnist

    _, (x_test, y_test) = load_mnist(mnist_dir)
    np.save(tmp_path / "digit.npy", x_test[0])
    assert main(["predict", str(out / "logreg"), str(tmp_path / "digit.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["digit"] == int(y_test[0])


def _must_not_run(*args, **kwargs):
    raise AssertionError("the error should have come before this work")


def test_cli_never_overwrites_an_earlier_run_or_a_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("digits.data.prepare", _must_not_run)
    earlier = tmp_path / "bl"
    (earlier / "knn").mkdir(parents=True)
    (earlier / "results.md").write_text("earlier run")
    (tmp_path / "notes.md").write_text("precious")
    for out, message in (
        (earlier, "folder is not empty; choose another --out"),
        (tmp_path / "notes.md", "exists and is not a folder"),
    ):
        code = main(["baselines", "--models", "logreg", "--train-size", "1000", "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 1 and err.startswith(f"digits: error: {out}: {message}") and err.count("\n") == 1
    assert (earlier / "results.md").read_text() == "earlier run" and (earlier / "knn").is_dir()
    assert (tmp_path / "notes.md").read_text() == "precious"


def test_raw_and_deskewed_runs_default_to_their_own_folders(tmp_path, monkeypatch):
    """`digits baselines` then `digits baselines --deskew`, as the README shows, keep both runs."""
    import digits.baselines

    class Stop(Exception):
        pass

    outs = []

    def record(config, out):
        outs.append((config.deskew, str(out)))
        raise Stop

    monkeypatch.setattr(digits.baselines, "train_all", record)
    monkeypatch.chdir(tmp_path)
    for flags in ([], ["--deskew"]):
        with pytest.raises(Stop):
            main(["baselines", *flags])
    assert outs == [(False, "runs/baselines"), (True, "runs/baselines-deskew")]
