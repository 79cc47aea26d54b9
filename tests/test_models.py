"""The model zoo, augmentation, test-time augmentation, ensembles, benchmark and multi-device training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import dummy_run

from digits import runs
from digits.augmentation import ElasticDistortion, StrokeWidth, UnevenInk, augmentation
from digits.batch_norm import fold_batch_norm
from digits.cli import main
from digits.inference import EnsembleClassifier, ShiftTTA
from digits.models import MODELS, build_model


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_maps_images_to_ten_probabilities(name):
    model = build_model(name)
    out = np.asarray(model(np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)))
    assert out.shape == (3, 10)
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5) and (out >= 0).all()


@pytest.mark.parametrize("name", ["fast-cnn", "resnet", "seed-cnn", "deep-cnn"])
def test_folding_batch_norm_keeps_the_outputs_and_drops_the_layers(name):
    import keras

    model = build_model(name)
    rng = np.random.default_rng(1)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:  # trained-looking statistics, so that folding has something to fold
        n = layer.moving_mean.shape[0]
        layer.moving_mean.assign(rng.normal(size=n))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=n))
        layer.gamma.assign(rng.uniform(0.5, 1.5, size=n))
        layer.beta.assign(rng.normal(size=n))
    folded = fold_batch_norm(model)
    x = rng.random((4, 28, 28, 1), dtype=np.float32)
    assert np.allclose(model(x, training=False), folded(x), atol=1e-5)
    remaining = [layer for layer in folded.layers if isinstance(layer, keras.layers.BatchNormalization)]
    # Every batch norm in these models follows a convolution; the Sequential seed CNN has none.
    assert len(remaining) == 0 and len(folded.layers) == len(model.layers) - len(norms)


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="choose one of: seed-cnn, keras-example, fast-cnn"):
        build_model("lenet")


@pytest.mark.parametrize("kind", ["affine", "elastic", "wide", "handwriting"])
def test_augmentation_distorts_but_keeps_shape_range_and_ink(kind):
    images = np.zeros((8, 28, 28, 1), np.float32)
    images[:, 6:22, 12:16] = 1.0  # a vertical bar, like a "1"
    out = np.asarray(augmentation(kind, seed=1)(images, training=True))
    assert out.shape == images.shape and out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    assert not np.allclose(out, images)
    assert np.all(out.sum(axis=(1, 2, 3)) > 0.5 * images[0].sum())  # the digit is not pushed out


def test_wide_augmentation_moves_digits_about_twice_as_far_as_affine():
    images = np.zeros((256, 28, 28, 1), np.float32)
    images[:, 10:18, 10:18] = 1.0  # a centred square: rotation and zoom keep its centre, shifts move it

    def mean_shift(kind):
        out = np.asarray(augmentation(kind, seed=4)(images, training=True))[..., 0]
        columns = (out.sum(axis=1) * np.arange(28)).sum(axis=1) / out.sum(axis=(1, 2))
        return np.mean(np.abs(columns - 13.5))

    # Shifts are uniform up to 10% (2.8 px) for affine and 20% (5.6 px) for wide: means 1.4 and 2.8 px.
    affine, wide = mean_shift("affine"), mean_shift("wide")
    assert 1.0 < affine < 1.8 and 2.2 < wide < 3.4


def test_elastic_distortion_bends_a_straight_stroke():
    images = np.zeros((16, 28, 28, 1), np.float32)
    images[:, 4:24, 13:15] = 1.0
    elastic = ElasticDistortion(seed=3)
    bent = np.asarray(elastic(images, training=True))
    # Column of the ink's centre in each row: a straight bar gives a constant, a bent one a spread.
    rows = bent[:, 6:22, :, 0]
    centres = (rows * np.arange(28)).sum(axis=2) / np.maximum(rows.sum(axis=2), 1e-6)
    assert np.mean(np.std(centres, axis=1)) > 0.1  # a shifted but straight bar gives 0


@pytest.mark.parametrize(("alpha", "low", "high"), [(12.0, 0.35, 0.65), (34.0, 1.1, 1.7)])
def test_elastic_displacement_scales_with_alpha(alpha, low, high):
    # On a ramp (pixel value = column) bilinear sampling is exact, so the output reads off the column shift.
    ramp = np.tile(np.arange(28, dtype=np.float32), (28, 1))[None, :, :, None] / 27
    warped = np.asarray(ElasticDistortion(alpha=alpha, seed=5)(np.repeat(ramp, 32, axis=0), training=True))
    shift = (warped - ramp)[:, 8:20, 8:20] * 27  # away from the border, where the shift is clipped
    assert low < shift.std() < high


def test_stroke_width_makes_pens_thicker_and_thinner():
    images = np.zeros((64, 28, 28, 1), np.float32)
    images[:, 4:24, 12:15] = 1.0  # a 3-pixel stroke
    out = np.asarray(StrokeWidth(seed=2)(images, training=True))
    ink = out.sum(axis=(1, 2, 3)) / images[0].sum()
    assert ink.max() > 1.4 and ink.min() < 0.8  # some up to 5 pixels wide, some thinner
    assert (out[:, 4:24, 12:15] > 0.3).all()  # thinning never wipes out the stroke's core
    assert np.array_equal(StrokeWidth(seed=2)(images, training=False), images)


def test_uneven_ink_only_takes_ink_away():
    images = np.zeros((64, 28, 28, 1), np.float32)
    images[:, 4:24, 10:18] = 1.0
    out = np.asarray(UnevenInk(seed=2)(images, training=True))
    assert (out <= images + 1e-6).all() and (out[images == 0] == 0).all()
    lost = 1 - out.sum(axis=(1, 2, 3)) / images[0].sum()
    assert lost.max() > 0.2 and np.median(lost) < 0.5  # faded or broken, mostly still there


def test_augmentation_rejects_unknown_recipes():
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        augmentation("mixup")


class FixedClassifier:
    """A stand-in model that returns given probabilities, to test how wrappers combine them."""

    def __init__(self, name, fn):
        self.name, self.path, self.fn, self.seen = name, None, fn, []

    def predict_proba(self, x, batch_size=1024):
        self.seen.append(x.copy())
        return self.fn(x)


def test_ensemble_averages_its_members_probabilities():
    a = FixedClassifier("a", lambda x: np.tile(np.eye(10)[3], (len(x), 1)))
    b = FixedClassifier("b", lambda x: np.tile(np.eye(10)[5], (len(x), 1)))
    ensemble = EnsembleClassifier([a, b])
    p = ensemble.predict_proba(np.zeros((2, 28, 28, 1)))
    assert p.shape == (2, 10) and p[0, 3] == 0.5 and p[0, 5] == 0.5
    assert ensemble.name == "ensemble(a, b)"
    said = []
    EnsembleClassifier([a, b], progress=said.append).predict_proba(np.zeros((2, 28, 28, 1)))
    assert [line.split(":")[0] for line in said] == ["  member 1/2 (a)", "  member 2/2 (b)"]
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleClassifier([])


def test_tta_averages_over_the_image_and_its_one_pixel_shifts():
    inner = FixedClassifier("m", lambda x: np.tile(np.eye(10)[1], (len(x), 1)))
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, 14, 14] = 1.0
    p = ShiftTTA(inner).predict_proba(image)
    assert np.allclose(p, np.eye(10)[1]) and ShiftTTA(inner).name == "m+tta"
    lit = sorted(tuple(np.argwhere(x[0, :, :, 0])[0]) for x in inner.seen)
    assert lit == [(13, 14), (14, 13), (14, 14), (14, 15), (15, 14)]


def _dummy_runs(tmp_path, configs: dict) -> list[str]:
    """Run folders holding a trivial scikit-learn model, each with the given config.json values."""
    return [str(dummy_run(tmp_path / name, config)) for name, config in configs.items()]


def test_an_ensemble_refuses_members_trained_beside_different_validation_splits(tmp_path):
    from digits.ensemble import build_ensemble

    members = _dummy_runs(tmp_path, {"one": {"split_seed": 1}, "other": {"split_seed": 0}})
    with pytest.raises(ValueError, match=r"different validation splits.*\(5000, 0\), \(5000, 1\)"):
        build_ensemble(members, tmp_path / "ensemble")
    assert not (tmp_path / "ensemble").exists()


@pytest.mark.slow
def test_an_ensemble_with_a_member_trained_on_all_images_has_no_validation_score(tmp_path, mnist_dir):
    from digits.ensemble import build_ensemble

    members = _dummy_runs(tmp_path, {"split": {"split_seed": 0}, "all": {"val_size": 0}})
    result = build_ensemble(members, tmp_path / "ensemble", data_dir=mnist_dir)
    assert result.val_accuracy is None and result.val_images == 0 and result.train_accuracy is not None
    assert runs.read_config(tmp_path / "ensemble").split == (0, 0)


@pytest.mark.slow
def test_benchmark_ensemble_and_tta_end_to_end(tmp_path, mnist_dir, capsys):
    out = tmp_path / "bench"
    argv = ["benchmark", "--models", "keras-example", "fast-cnn", "--epochs", "1", "--train-size", "3000"]
    assert main([*argv, "--out", str(out), "--data-dir", str(mnist_dir)]) == 0
    result = json.loads((out / "benchmark.json").read_text())
    assert [row["model"] for row in result["rows"]] == ["keras-example", "fast-cnn"]
    for row in result["rows"]:
        # The per-epoch score after the last epoch is the run's final test accuracy; chance is 10%.
        assert row["curve"]["test_accuracy"] == [pytest.approx(row["test_accuracy"], abs=1e-6)]
        assert row["test_accuracy"] > 0.5 and row["images_per_second"] > 0
    table = (out / "benchmark.md").read_text()
    assert "| fast-cnn | 1 |" in table and "Quick look (--epochs 1 --train-size 3000)" in table
    assert result["overrides"] == {"epochs": 1, "train_size": 3000}
    assert result["default_model_images_per_second"] > 0  # the packaged model, timed in the same run
    assert (out / "accuracy_vs_seconds.png").is_file()

    members = [str(out / "keras-example"), str(out / "fast-cnn")]
    ensemble = tmp_path / "ensemble"
    assert (
        main(["ensemble", "--members", *members, "--out", str(ensemble), "--data-dir", str(mnist_dir)]) == 0
    )
    metrics = json.loads((ensemble / "metrics.json").read_text())
    singles = [json.loads((out / m / "metrics.json").read_text()) for m in ("keras-example", "fast-cnn")]
    assert metrics["model"].startswith("ensemble(") and metrics["val_accuracy"] > 0.5
    capsys.readouterr()
    assert main(["evaluate", str(ensemble), "--json", "--tta", "--data-dir", str(mnist_dir)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["model"].endswith("+tta") and evaluated["test_accuracy"] > 0.5
    # Averaging two models should not be worse than the weaker of them.
    assert metrics["test_accuracy"] >= min(s["test_accuracy"] for s in singles)


@pytest.mark.slow
def test_the_shipped_best_model_is_small_and_scores_what_it_recorded(mnist_dir):
    from digits import data
    from digits.inference import load_classifier

    folder = Path(__file__).parents[1] / "models" / "deep-cnn-ema-e40-seed3"
    assert (folder / "model.keras").stat().st_size < 5_000_000  # the limit for the repository
    recorded = json.loads((folder / "metrics.json").read_text())
    prepared = data.prepare(mnist_dir)
    predicted = load_classifier(folder).predict_proba(prepared.x_test).argmax(axis=1)
    accuracy = float(np.mean(predicted == prepared.y_test))
    assert accuracy == pytest.approx(recorded["test_accuracy"], abs=1e-4)  # one image is 1e-4
    assert accuracy > 0.995


@pytest.mark.slow
def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path, mnist_dir):
    out = tmp_path / "mirrored"
    command = [sys.executable, "-m", "digits", "train", "--model", "fast-cnn", "--distribute", "mirrored"]
    command += ["--epochs", "1", "--train-size", "2000", "--out", str(out), "--data-dir", str(mnist_dir)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "on 2 devices" in done.stdout
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] > 0.5  # chance is 0.1


def test_ema_sets_the_weight_average_and_m5_ends_on_it_and_its_checkpoints_keep_it(tmp_path):
    import keras

    from digits.training import TrainConfig, compile_model

    def averages(optimizer):
        return [v.numpy() for v in optimizer.variables if v.path.endswith("_average")]

    plain = build_model("deep-cnn")
    compile_model(plain, TrainConfig(model="deep-cnn").resolved(), steps_per_epoch=2)
    assert not plain.optimizer.use_ema

    # --ema turns the average on for any model, and 0 turns off a model's own.
    chosen = build_model("deep-cnn")
    compile_model(chosen, TrainConfig(model="deep-cnn", ema_momentum=0.99).resolved(), steps_per_epoch=2)
    assert chosen.optimizer.use_ema and chosen.optimizer.ema_momentum == 0.99
    off = build_model("m5")
    compile_model(off, TrainConfig(model="m5", ema_momentum=0.0).resolved(), steps_per_epoch=2)
    assert not off.optimizer.use_ema

    model = build_model("m5")
    compile_model(model, TrainConfig(model="m5").resolved(), steps_per_epoch=2)
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == 0.999
    rng = np.random.default_rng(0)
    images = rng.random((64, 28, 28, 1), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
    model.fit(images, labels, batch_size=32, epochs=1, verbose=0)
    # fit ends by writing the averages into the model, which is what gets saved and evaluated.
    average = averages(model.optimizer)
    assert len(average) == len(model.trainable_weights)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(average, model.trainable_weights, strict=True))

    # A resumed run continues the same average: the checkpoint carries it with the optimizer state.
    model.save(tmp_path / "checkpoint.keras")
    restored = keras.models.load_model(tmp_path / "checkpoint.keras")
    assert restored.optimizer.use_ema and restored.optimizer.ema_momentum == 0.999
    assert all(np.array_equal(a, b) for a, b in zip(average, averages(restored.optimizer), strict=True))


def test_batch_norm_recalibration_measures_clean_images_and_keeps_weights():
    import keras

    from digits.batch_norm import recalibrate_batch_norm

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.BatchNormalization()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x)))
    norm = model.layers[1]
    norm.moving_mean.assign([5.0])  # stale statistics, as if from a different distribution
    norm.moving_variance.assign([9.0])
    weights = [w.copy() for w in model.layers[-1].get_weights()]
    images = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32) * 0.5
    recalibrate_batch_norm(model, images, seed=0, batches=4, batch_size=16)
    assert float(norm.moving_mean.numpy()[0]) == pytest.approx(images.mean(), abs=1e-4)
    assert float(norm.moving_variance.numpy()[0]) == pytest.approx(images.var(), rel=0.02)
    assert norm.momentum == 0.99
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.layers[-1].get_weights(), strict=True))


def test_recalibration_is_kept_only_when_validation_agrees_and_always_without_one(monkeypatch):
    from types import SimpleNamespace

    import keras

    from digits import batch_norm

    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x)))
    norm = model.layers[2]
    images = np.random.default_rng(1).random((200, 28, 28, 1), dtype=np.float32)
    # Labels the model already predicts: 100% validation accuracy before any recalibration.
    data = SimpleNamespace(
        x_train=images, x_val=images, y_val=model.predict(images, verbose=0).argmax(axis=1)
    )
    original = norm.moving_mean.numpy().copy()
    messages = []

    monkeypatch.setattr(
        batch_norm, "recalibrate_batch_norm", lambda m, x, seed: norm.moving_mean.assign(original + 1e3)
    )
    batch_norm.recalibrate_if_better(model, data, seed=0, log=messages.append)
    assert np.array_equal(norm.moving_mean.numpy(), original) and messages[-1].endswith("discarded")

    monkeypatch.setattr(batch_norm, "recalibrate_batch_norm", lambda m, x, seed: None)
    batch_norm.recalibrate_if_better(model, data, seed=0, log=messages.append)
    assert messages[-1].endswith("-> 100.00%, kept")

    # Trained on all images, there is no validation split: the statistics are recalibrated regardless.
    calls = []
    monkeypatch.setattr(batch_norm, "recalibrate_batch_norm", lambda m, x, seed: calls.append(len(x)))
    no_validation = SimpleNamespace(x_train=images, x_val=images[:0], y_val=data.y_val[:0])
    batch_norm.recalibrate_if_better(model, no_validation, seed=0, log=messages.append)
    assert calls == [200] and "no validation split" in messages[-1]


def _must_not_run(*args, **kwargs):
    raise AssertionError("the error should have come before this work")


def test_an_ensemble_never_overwrites_a_run_or_a_file_and_says_so_before_scoring(
    tmp_path, monkeypatch, capsys
):
    members = _dummy_runs(tmp_path, {"a": {}, "b": {}})
    monkeypatch.setattr("digits.data.prepare", _must_not_run)
    before = (tmp_path / "a" / "config.json").read_text()
    (tmp_path / "notes.md").write_text("precious")
    for out, message in (
        (members[0], "folder is not empty; choose another --out"),
        (tmp_path / "notes.md", "exists and is not a folder"),
    ):
        assert main(["ensemble", "--members", *members, "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"digits: error: {out}: {message}") and err.count("\n") == 1
    assert (tmp_path / "a" / "config.json").read_text() == before
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "config.json",
        "metrics.json",
        "model.skops",
    ]
    assert (tmp_path / "notes.md").read_text() == "precious"


def test_benchmark_checks_every_value_before_training_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    import digits.benchmark

    monkeypatch.setattr(digits.benchmark, "train", _must_not_run)
    out = tmp_path / "bench"
    for flags, message in (
        (["--models", "fast-cnn", "bogus"], "unknown model 'bogus'"),
        (["--models", "fast-cnn", "fast-cnn"], "each model can run once"),
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--train-size", "5"], "train_size must be at least 10"),
        (["--seed", "-1"], "seed must be between 0"),
    ):
        assert main(["benchmark", *flags, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("digits: error: ") and message in err and err.count("\n") == 1
        assert not out.exists()
    (out / "fast-cnn").mkdir(parents=True)
    assert main(["benchmark", "--models", "fast-cnn", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "choose another --out" in err and "--resume" not in err


def test_only_an_ensemble_json_is_loaded_as_an_ensemble(tmp_path):
    from digits import DigitsError
    from digits.inference import load_classifier

    (run,) = _dummy_runs(tmp_path, {"run": {}})
    (tmp_path / "run" / "metrics.json").write_text('{"model": "dummy"}')
    for name in ("config.json", "metrics.json"):
        with pytest.raises(DigitsError, match=f"{name}: not a .onnx, .keras, .skops or ensemble.json model"):
            load_classifier(Path(run) / name)


def test_benchmark_table_marks_a_quick_look_and_only_a_quick_look():
    from digits.benchmark import markdown_table

    row = {
        "model": "fast-cnn",
        "epochs": 1,
        "test_accuracy": 0.99,
        "test_r2": 0.98,
        "train_seconds": 12.0,
        "seconds_to_99": 12.0,
        "images_per_second": 30000.0,
        "curve": {"seconds": [12.0], "test_accuracy": [0.99]},
    }
    full = markdown_table([row], "a machine", overrides={"epochs": None, "train_size": None})
    quick = markdown_table([row], "a machine", overrides={"epochs": 1, "train_size": None})
    assert "Quick look" not in full
    assert "Quick look (--epochs 1): the recipes were overridden" in quick


def test_an_ensemble_of_keras_models_predicts_without_tensorflow_retracing_warnings(tmp_path, caplog):
    import logging

    from digits.inference import load_classifier

    build_model("fast-cnn").save(tmp_path / "member.keras")
    listed = ["member.keras"] * 6  # TensorFlow warns from the fifth trace of one function on
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": listed, "tta": False}))
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        probabilities = load_classifier(tmp_path / "ensemble.json").predict_proba(np.zeros((2, 28, 28, 1)))
    assert probabilities.shape == (2, 10)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
