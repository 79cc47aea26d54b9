"""The command line: clear one-line errors for bad input, and the quick commands' output."""

from __future__ import annotations

import numpy as np
import pytest

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
    assert code == 2
    assert err.startswith("digits: error: ") and err.count("\n") == 1 and "DIGITS_DATA_DIR" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--learning-rate", "-1"], "learning_rate must be positive"),
        (["--seed", "-1"], "seed must be between 0 and 4294967295"),
        (["--split-seed", "-1"], "split_seed must be between 0 and 4294967295"),
        (["--val-size", "-1"], "val_size must be 0 or between 10 and 59990"),
        (["--val-size", "5"], "val_size must be 0 or between 10 and 59990"),
        (["--val-size", "59995"], "val_size must be 0 or between 10 and 59990"),
        (["--model", "nope"], "unknown model 'nope'"),
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


def test_runs_recorded_before_split_seed_keep_their_split():
    from digits.training import TrainConfig

    assert TrainConfig.from_dict({"model": "deep-cnn", "seed": 4}).split_seed == 4
    assert TrainConfig.from_dict({"seed": 4, "split_seed": 0}).split_seed == 0


def test_train_refuses_to_overwrite_a_folder_with_work_in_it(capsys, tmp_path):
    (tmp_path / "model.keras").write_text("precious")
    code, _, err = run(capsys, "train", "--out", str(tmp_path))
    assert code == 2 and "not empty" in err and "--resume" in err
    assert (tmp_path / "model.keras").read_text() == "precious"


def test_resume_of_a_folder_that_is_no_run_is_an_error(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--resume", str(tmp_path))
    assert code == 2 and "nothing to resume" in err


def test_predict_and_evaluate_with_a_missing_model_are_errors(capsys, tmp_path):
    code, _, err = run(capsys, "predict", str(tmp_path), "x.png")
    assert code == 2 and "no model.keras, model.joblib, ensemble.json" in err
    code, _, err = run(capsys, "evaluate", str(tmp_path / "m.keras"))
    assert code == 2 and "no such model file" in err


def test_a_damaged_run_file_is_named_in_a_one_line_error(capsys, tmp_path):
    import joblib
    from sklearn.dummy import DummyClassifier

    joblib.dump(DummyClassifier().fit(np.zeros((10, 784)), np.arange(10)), tmp_path / "model.joblib")
    (tmp_path / "config.json").write_text('{"model": "dummy", "se')  # cut off mid-write by hand
    code, _, err = run(capsys, "evaluate", str(tmp_path))
    assert code == 2 and f"{tmp_path / 'config.json'}: not valid JSON" in err
    code, _, err = run(capsys, "train", "--resume", str(tmp_path))
    assert code == 2 and f"{tmp_path / 'config.json'}: not valid JSON" in err


def test_bad_npy_input_is_rejected_with_its_shape(tmp_path):
    from digits.preprocess import ImageError, load_image

    np.save(tmp_path / "wrong.npy", np.zeros((5, 5)))
    with pytest.raises(ImageError, match=r"expected a numeric 28x28 array.*\(5, 5\)"):
        load_image(tmp_path / "wrong.npy")


@pytest.mark.parametrize("name", ["model.keras", "model.joblib"])
def test_a_damaged_model_file_is_a_one_line_error(capsys, tmp_path, name):
    (tmp_path / name).write_bytes(b"not a model at all")
    np.save(tmp_path / "digit.npy", np.zeros((28, 28)))
    code, _, err = run(capsys, "predict", str(tmp_path), str(tmp_path / "digit.npy"))
    assert code == 2 and f"{name}: not a readable model file" in err and "Traceback" not in err
