"""The command line: clear one-line errors for bad input, and the quick commands' output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import dummy_run

from digits import DigitsError
from digits.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_the_seed_cnn_with_its_defaults(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "seed-cnn" in out and "15 epochs" in out


def test_data_check_reports_missing_files_without_a_traceback(capsys, tmp_path):
    code, out, _ = run(capsys, "data", "check", "--data-dir", str(tmp_path))
    assert code == 1
    assert out.count("ERROR") == 4 and "file not found" in out and "Traceback" not in out


def test_data_check_verifies_the_real_files(capsys, mnist_dir):
    code, out, _ = run(capsys, "data", "check", "--data-dir", str(mnist_dir))
    assert code == 0 and out.count("  ok ") == 4 and "all four files verified" in out


def test_train_without_data_is_a_one_line_error(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "r"))
    assert code == 1
    assert err.startswith("digits: error: ") and err.count("\n") == 1 and "DIGITS_DATA_DIR" in err
    assert not (tmp_path / "r").exists()


def test_a_folder_that_cannot_be_written_is_one_line(capsys, tmp_path, mnist_dir):
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "run"
    code, _, err = run(
        capsys,
        "train",
        "--epochs",
        "1",
        "--train-size",
        "100",
        "--out",
        str(out),
        "--data-dir",
        str(mnist_dir),
    )
    assert code == 1 and err == f"digits: error: {out}: not a directory\n"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--epochs", "99999999999999999999"], "epochs must be at most 10000"),
        (["--batch-size", "99999999999999999999"], "batch_size must be at most 60000"),
        (["--learning-rate", "-1"], "learning_rate must be positive"),
        (["--learning-rate", "1e300"], "learning_rate must be positive, finite and at most 10"),
        (["--seed", "-1"], "seed must be between 0 and 4294967295"),
        (["--split-seed", "-1"], "split_seed must be between 0 and 4294967295"),
        (["--val-size", "-1"], "val_size must be 0 or between 10 and 59990"),
        (["--val-size", "5"], "val_size must be 0 or between 10 and 59990"),
        (["--val-size", "59995"], "val_size must be 0 or between 10 and 59990"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--ema", "1"], "ema_momentum must be at least 0 and below 1, got 1.0"),
        (["--ema", "-0.5"], "ema_momentum must be at least 0 and below 1, got -0.5"),
        (["--ema", "nan"], "ema_momentum must be at least 0 and below 1, got nan"),
    ],
)
def test_train_rejects_bad_settings_before_doing_any_work(capsys, tmp_path, flags, message):
    out_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", "--out", str(out_dir), *flags)
    assert code == 2 and message in err
    assert not out_dir.exists()


class _SplitDrawn(Exception):
    pass


@pytest.mark.parametrize(
    "flags, split",
    [
        (["--seed", "3"], (5000, 0)),
        (["--seed", "3", "--split-seed", "2"], (5000, 2)),
        (["--seed", "3", "--val-size", "0"], (0, 0)),
    ],
)
def test_the_seed_varies_the_model_while_the_validation_split_stays(
    capsys, tmp_path, monkeypatch, flags, split
):
    """Ensembles are chosen on one validation split, so differently seeded members must share it."""
    drawn = []

    def record_split(data_dir, val_size, seed, train_size):
        drawn.append((val_size, seed))
        raise _SplitDrawn

    monkeypatch.setattr("digits.data.prepare", record_split)
    with pytest.raises(_SplitDrawn):
        main(["train", "--model", "fast-cnn", "--out", str(tmp_path / "run"), *flags])
    assert drawn == [split]


def test_a_run_folder_of_another_schema_is_refused_in_one_line(capsys, tmp_path):
    run_dir = dummy_run(tmp_path / "run", {"schema_version": None, "seed": 4})  # from before the schema
    for argv in (["evaluate", str(run_dir)], ["train", "--resume", str(run_dir)]):
        code, _, err = run(capsys, *argv)
        assert code == 1 and _one_line_error(err, "written with run-folder schema None, this version reads 1")


def test_train_refuses_to_overwrite_a_folder_with_work_in_it(capsys, tmp_path):
    (tmp_path / "model.keras").write_text("precious")
    code, _, err = run(capsys, "train", "--out", str(tmp_path))
    assert code == 1 and "not empty" in err and "--resume" not in err  # not a run: nothing to resume
    assert (tmp_path / "model.keras").read_text() == "precious"
    (tmp_path / "config.json").write_text("{}")  # a run that started
    code, _, err = run(capsys, "train", "--out", str(tmp_path))
    assert code == 1 and f"continue it with: digits train --resume {tmp_path}" in err
    (tmp_path / "metrics.json").write_text("{}")  # and finished
    code, _, err = run(capsys, "train", "--out", str(tmp_path))
    assert code == 1 and "not empty" in err and "--resume" not in err


def test_resume_of_a_folder_that_is_no_run_is_an_error(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--resume", str(tmp_path))
    assert code == 1 and "nothing to resume" in err


def test_predict_and_evaluate_with_a_missing_model_are_errors(capsys, tmp_path):
    code, _, err = run(capsys, "predict", str(tmp_path), "x.png")
    assert code == 1 and "no model.onnx, model.keras, model.skops, ensemble.json, model.joblib" in err
    code, _, err = run(capsys, "evaluate", str(tmp_path / "m.keras"))
    assert code == 1 and "no such model file" in err


def test_a_damaged_run_file_is_named_in_a_one_line_error(capsys, tmp_path):
    import skops.io
    from sklearn.dummy import DummyClassifier

    skops.io.dump(DummyClassifier().fit(np.zeros((10, 784)), np.arange(10)), tmp_path / "model.skops")
    (tmp_path / "config.json").write_text('{"model": "dummy", "se')  # cut off mid-write by hand
    code, _, err = run(capsys, "evaluate", str(tmp_path))
    assert code == 1 and f"{tmp_path / 'config.json'}: not valid JSON" in err
    code, _, err = run(capsys, "train", "--resume", str(tmp_path))
    assert code == 1 and f"{tmp_path / 'config.json'}: not valid JSON" in err


def test_bad_npy_input_is_rejected_with_its_shape(tmp_path):
    from digits.images import ImageError
    from digits.preprocess import load_image

    np.save(tmp_path / "wrong.npy", np.zeros((5, 5)))
    with pytest.raises(ImageError, match=r"expected a numeric 28x28 array.*\(5, 5\)"):
        load_image(tmp_path / "wrong.npy")


@pytest.mark.parametrize("name", ["model.keras", "model.skops"])
def test_a_damaged_model_file_is_a_one_line_error(capsys, tmp_path, name):
    (tmp_path / name).write_bytes(b"not a model at all")
    np.save(tmp_path / "digit.npy", np.zeros((28, 28)))
    code, _, err = run(capsys, "predict", str(tmp_path), str(tmp_path / "digit.npy"))
    assert code == 1 and f"{name}: not a readable model file" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- review fixes


def _dummy_run(folder, config) -> str:
    return str(dummy_run(folder, config))


def _must_not_run(*args, **kwargs):
    raise AssertionError("the error should have come before this work")


def _one_line_error(err: str, message: str) -> bool:
    return err.startswith("digits: error: ") and err.count("\n") == 1 and message in err


def test_models_shows_each_default_recipe_in_plain_words(capsys):
    code, out, _ = run(capsys, "models")
    fast = out.split("fast-cnn", 1)[1].split("deep-cnn", 1)[0]
    assert code == 0 and "1 epochs" not in out
    assert "1 epoch," in fast and "warm-up 0.3 epochs" in fast and "label smoothing 0.1" in fast
    deep = out.split("deep-cnn", 1)[1].split("\nm5", 1)[0]
    assert "24 epochs" in deep and "warm-up 1 epoch," in deep and "averaged" not in deep
    m5 = out.split("\nm5", 1)[1].split("\nresnet", 1)[0]
    assert "augmentation wide, weights averaged (EMA 0.999)" in m5


@pytest.mark.parametrize("name", ["metrics.json", "config.json"])
def test_a_run_file_that_is_no_model_is_a_one_line_error(capsys, tmp_path, monkeypatch, name):
    run_dir = _dummy_run(tmp_path / "run", {"model": "dummy"})
    monkeypatch.setattr("digits.data.prepare", _must_not_run)
    np.save(tmp_path / "digit.npy", np.zeros((28, 28)))
    for argv in (
        ["evaluate", f"{run_dir}/{name}"],
        ["predict", f"{run_dir}/{name}", str(tmp_path / "digit.npy")],
    ):
        code, _, err = run(capsys, *argv)
        message = f"{name}: not a .onnx, .keras, .skops or ensemble.json model"
        assert code == 1 and _one_line_error(err, message)


def test_damaged_ensemble_and_config_files_are_one_line_errors(capsys, tmp_path):
    ensemble = tmp_path / "ensemble"
    ensemble.mkdir()
    (ensemble / "ensemble.json").write_text('{"members": 5}')
    code, _, err = run(capsys, "evaluate", str(ensemble))
    assert code == 1 and _one_line_error(err, "ensemble.json: not an ensemble file")
    listed = tmp_path / "listed"
    _dummy_run(listed, [])
    code, _, err = run(capsys, "evaluate", str(listed))
    assert code == 1 and _one_line_error(err, "config.json: not a run file")
    from digits.training import TrainConfig, train

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text("[]")
    with pytest.raises(DigitsError, match="config.json: not a run file"):  # also when called directly
        train(TrainConfig(), unfinished, resume=True)


def test_train_into_an_existing_file_is_a_one_line_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("digits.data.prepare", _must_not_run)
    (tmp_path / "notes.md").write_text("precious")
    code, _, err = run(capsys, "train", "--epochs", "1", "--out", str(tmp_path / "notes.md"))
    assert code == 1 and _one_line_error(err, "notes.md: exists and is not a folder")
    assert (tmp_path / "notes.md").read_text() == "precious"


def test_resume_refuses_other_settings_but_takes_a_data_folder(capsys, tmp_path, monkeypatch):
    calls = []
    from digits.runs import RunMetrics

    metrics = RunMetrics("m", 1.0, 0.0, 1.0, 10000, 55000, train_accuracy=1.0, train_seconds=1.0)
    monkeypatch.setattr("digits.training.train", lambda config, out, resume: calls.append(resume) or metrics)
    run_dir = str(tmp_path / "run")
    code, _, err = run(
        capsys, "train", "--resume", run_dir, "--epochs", "3", "--model", "fast-cnn", "--batch-size", "7"
    )
    assert code == 2 and _one_line_error(err, "cannot be combined with --model, --epochs, --batch-size")
    for flags in (["--seed", "0"], ["--augment", "none"], ["--out", run_dir], ["--val-size", "5000"]):
        code, _, err = run(capsys, "train", "--resume", run_dir, *flags)
        assert code == 2 and _one_line_error(err, f"cannot be combined with {flags[0]}")
    assert calls == []
    assert main(["train", "--resume", run_dir, "--data-dir", str(tmp_path)]) == 0
    assert calls == [True]


def test_train_without_flags_takes_the_recipe_defaults_and_names_the_folder_after_the_model(
    tmp_path, monkeypatch
):
    from digits.training import TrainConfig

    seen = []

    def fake_train(config, out, resume):
        seen.append((config, out))
        raise _SplitDrawn

    monkeypatch.setattr("digits.training.train", fake_train)
    monkeypatch.chdir(tmp_path)
    for argv, model in (
        (["train"], "seed-cnn"),
        (["train", "--model", "fast-cnn", "--augment", "none"], "fast-cnn"),
    ):
        with pytest.raises(_SplitDrawn):
            main(argv)
        config, out = seen[-1]
        assert config.model == model and str(out).startswith(f"runs/{model}-")
    assert seen[0][0] == TrainConfig() and seen[1][0].augment == "none"


@pytest.mark.parametrize(
    "state, message",
    [
        ({"config.json", "checkpoints/state.json"}, "the last completed epoch is saved; continue with"),
        ({"config.json"}, "no epoch was completed yet; start it over with: digits train --resume"),
        (set(), "nothing was saved; run the same command again"),
    ],
)
def test_ctrl_c_says_what_was_saved(capsys, tmp_path, monkeypatch, state, message):
    def interrupted(config, out, resume):
        for name in state:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr("digits.training.train", interrupted)
    code, _, err = run(capsys, "train", "--out", str(tmp_path / "run"))
    assert code == 130 and message in err


def test_bad_tf_config_is_named(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("digits.training.train", _must_not_run)
    monkeypatch.setenv("TF_CONFIG", "{bad")
    code, _, err = run(capsys, "train", "--distribute", "multi-worker", "--out", str(tmp_path / "run"))
    assert code == 2 and _one_line_error(err, "TF_CONFIG environment variable is not valid JSON")


def test_predict_calls_a_folder_a_folder(capsys, tmp_path):
    run_dir = _dummy_run(tmp_path / "run", {"model": "dummy"})
    (tmp_path / "images").mkdir()
    code, _, err = run(capsys, "predict", run_dir, str(tmp_path / "images"))
    assert code == 1 and "images: is a folder, not an image file" in err


def test_predict_says_when_its_answer_is_a_guess(capsys, tmp_path):
    run_dir = _dummy_run(tmp_path / "run", {"model": "dummy"})  # ten classes at 10% each
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255
    np.save(tmp_path / "one.npy", digit)
    code, out, _ = run(capsys, "predict", run_dir, str(tmp_path / "one.npy"))
    assert code == 0 and out.endswith("(confidence 10.0%: low, the image may not hold one clear digit)\n")
    code, out, _ = run(capsys, "predict", run_dir, str(tmp_path / "one.npy"), "--json")
    assert code == 0 and json.loads(out)["low_confidence"] is True


def test_predict_says_when_an_image_is_not_a_digit(capsys, tmp_path):
    from digits.calibration import Calibration

    run_dir = _dummy_run(tmp_path / "run", {"model": "dummy"})  # ten classes at 10% each
    Calibration(1.0, 0.5, {}).save(Path(run_dir))
    scribble = np.zeros((28, 28), np.uint8)
    scribble[4:24, 12:16] = 255
    np.save(tmp_path / "mark.npy", scribble)
    code, out, _ = run(capsys, "predict", run_dir, str(tmp_path / "mark.npy"))
    assert code == 0 and out.endswith("mark.npy: not a digit (the closest is 0, confidence 10.0%)\n")
    code, out, _ = run(capsys, "predict", run_dir, str(tmp_path / "mark.npy"), "--json")
    assert code == 0 and json.loads(out)["not_a_digit"] is True


def test_predict_number_says_what_it_read_and_what_it_could_not(capsys, tmp_path):
    from PIL import Image, ImageDraw

    from digits.calibration import Calibration

    run_dir = _dummy_run(tmp_path / "run", {"model": "dummy"})  # ten classes at 10% each
    image = Image.new("L", (400, 200), 255)
    ImageDraw.Draw(image).line([(100, 40), (100, 160)], fill=0, width=12)
    ImageDraw.Draw(image).line([(300, 40), (300, 160)], fill=0, width=12)
    image.save(tmp_path / "two.png")
    Image.new("L", (100, 100), 255).save(tmp_path / "blank.png")
    np.save(tmp_path / "one.npy", np.zeros((28, 28), np.uint8))
    two = str(tmp_path / "two.png")
    code, out, _ = run(capsys, "predict", "--number", run_dir, two)
    assert code == 0 and out == f"{two}: 00 (confidence 1.0%: low, a digit or a join may be misread)\n"
    files = [str(tmp_path / "blank.png"), str(tmp_path / "one.npy"), two]
    code, out, err = run(capsys, "predict", "--number", run_dir, *files)
    assert code == 1 and out.count("\n") == 1  # the one readable image is still read
    assert "blank.png: no digit found" in err and "one.npy: a .npy array holds one 28x28 digit" in err
    Calibration(1.0, 0.5, {}).save(Path(run_dir))  # now every mark is "not a digit"
    code, out, _ = run(capsys, "predict", "--number", run_dir, two)
    assert code == 0 and out.endswith("two.png: no number (none of its 2 marks is a digit)\n")
    one = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(one).line([(100, 40), (100, 160)], fill=0, width=12)
    one.save(tmp_path / "one.png")
    code, out, _ = run(capsys, "predict", "--number", run_dir, str(tmp_path / "one.png"))
    assert code == 0 and out.endswith("one.png: no number (its one mark is not a digit)\n")


def test_calibrate_fits_a_run_on_its_own_validation_split(capsys, tmp_path, mnist_dir):
    run_dir = _dummy_run(tmp_path / "run", {"model": "dummy", "val_size": 500, "split_seed": 0})
    code, out, _ = run(capsys, "calibrate", run_dir, "--data-dir", str(mnist_dir))
    assert code == 0 and out.strip().endswith(f"saved to {Path(run_dir) / 'calibration.json'}")
    calibration = json.loads((Path(run_dir) / "calibration.json").read_text())
    assert calibration["fitted_on"]["validation_digits"] == 500 and calibration["temperature"] > 0
    # The dummy says 10% for every digit, so any threshold it gets keeps its answers.
    assert calibration["not_a_digit_below"] <= 0.1 + 1e-6

    everything = _dummy_run(tmp_path / "all", {"model": "dummy", "val_size": 0})
    code, _, err = run(capsys, "calibrate", everything, "--data-dir", str(mnist_dir))
    assert code == 2 and _one_line_error(err, "no validation split is left to fit on")


def test_predict_without_a_model_uses_the_default_one(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITS_MODEL", _dummy_run(tmp_path / "run", {"model": "dummy"}))
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255
    np.save(tmp_path / "one.npy", digit)
    code, out, _ = run(capsys, "predict", str(tmp_path / "one.npy"), "--json")
    assert code == 0 and json.loads(out)["probabilities"] == [0.1] * 10  # the dummy's answer
    code, _, err = run(capsys, "predict", str(tmp_path / "run"))
    assert code == 2 and _one_line_error(err, "no image to read: give image files after the model")
    # An existing file without a suffix is an image; a missing path without one, a mistyped run folder.
    (tmp_path / "scan").write_bytes((tmp_path / "one.npy").read_bytes())
    code, out, _ = run(capsys, "predict", str(tmp_path / "scan"), str(tmp_path / "one.npy"))
    assert code == 1 and out.count("\n") == 1  # scan is no .npy, so not readable; one.npy is read
    code, _, err = run(capsys, "predict", str(tmp_path / "rnu"), str(tmp_path / "one.npy"))
    assert code == 1 and _one_line_error(err, "rnu: no model there")


def test_evaluate_scores_the_training_subset_the_run_was_trained_on(capsys, tmp_path, monkeypatch):
    drawn = []

    def record_split(data_dir, val_size=5000, seed=0, train_size=None):
        drawn.append((val_size, seed, train_size))
        raise _SplitDrawn

    monkeypatch.setattr("digits.data.prepare", record_split)
    run_dir = _dummy_run(
        tmp_path / "run", {"model": "dummy", "val_size": 2000, "split_seed": 3, "train_size": 1000}
    )
    with pytest.raises(_SplitDrawn):
        main(["evaluate", run_dir])
    assert drawn == [(2000, 3, 1000)]


@pytest.mark.slow
def test_evaluate_reproduces_the_train_accuracy_of_a_subset_run(capsys, tmp_path, mnist_dir):
    import json

    out = tmp_path / "run"
    data = ["--data-dir", str(mnist_dir)]
    argv = ["train", "--model", "fast-cnn", "--epochs", "1", "--train-size", "2000", "--out", str(out)]
    assert main([*argv, *data]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json", *data]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    recorded = json.loads((out / "metrics.json").read_text())
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert evaluated[key] == pytest.approx(recorded[key], abs=1e-6)


def _python(code: str, *paths) -> subprocess.CompletedProcess:
    path = os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)


def test_tensorflow_start_up_lines_are_held_back():
    result = _python("from digits import import_tensorflow_quietly as q; q(); import tensorflow; print('ok')")
    assert result.returncode == 0 and result.stdout == "ok\n" and result.stderr == ""


def test_tensorflow_imports_with_stderr_closed_and_passes_on_its_other_messages(tmp_path):
    code = "import os; os.close(2); from digits import import_tensorflow_quietly as q; q(); print('ok')"
    result = _python(code)
    assert result.returncode == 0 and result.stdout == "ok\n"
    (tmp_path / "tensorflow.py").write_text(
        "import os\nos.write(2, b'I0000 start-up chatter\\nW0000 a real warning\\n')\n"
    )
    result = _python("from digits import import_tensorflow_quietly as q; q()", tmp_path)
    assert result.returncode == 0 and result.stderr == "W0000 a real warning\n"


def test_a_failing_tensorflow_import_still_shows_what_it_wrote(tmp_path):
    (tmp_path / "tensorflow.py").write_text(
        "import os\nos.write(2, b'libtensorflow: broken install\\n')\nraise ImportError('no libtensorflow')\n"
    )
    result = _python("from digits import import_tensorflow_quietly as q; q()", tmp_path)
    assert result.returncode == 1
    assert (
        "libtensorflow: broken install" in result.stderr and "ImportError: no libtensorflow" in result.stderr
    )


def test_output_into_a_closed_pipe_ends_quietly():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("PYTHONUNBUFFERED", None)  # buffered, as in most shells: the pipe breaks at the last flush
    command = [sys.executable, "-m", "digits", "models"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # like `digits models | head -0`: gone before the first line is written
    err = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait() == 1 and err == ""


def test_version_and_python_dash_m_name_the_package_version():
    from digits import __version__

    script = str(Path(sys.executable).parent / "digits")  # the console script beside this interpreter
    for command in ([script, "--version"], [sys.executable, "-m", "digits", "--version"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout == f"digits {__version__}\n", command
