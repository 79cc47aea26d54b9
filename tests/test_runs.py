"""The run folder: typed, versioned config.json and metrics.json, and the report of the shipped models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from digits import DigitsError, runs
from digits.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_config_and_metrics_round_trip_with_their_schema_version(tmp_path):
    config = runs.RunConfig("fast-cnn", "keras", 2000, 3, 1000, settings={"epochs": 2})
    metrics = runs.RunMetrics("fast-cnn", 0.99, 0.03, 0.98, 10000, 1000, extra={"images_per_second": 5.0})
    runs.write_config(tmp_path, config)
    runs.write_metrics(tmp_path, metrics)
    assert runs.read_config(tmp_path) == config and runs.read_metrics(tmp_path) == metrics
    written = json.loads((tmp_path / "metrics.json").read_text())
    # Flat on disk: the extra figures beside the typed ones, for anyone reading the file.
    assert written["images_per_second"] == 5.0 and written["schema_version"] == runs.SCHEMA_VERSION
    assert runs.recorded_split(tmp_path) == (2000, 3) and config.train_images == 1000


def test_a_folder_without_a_config_has_the_default_split_and_no_metrics(tmp_path):
    assert runs.read_config(tmp_path) is None and runs.read_metrics(tmp_path) is None
    assert runs.recorded_split(tmp_path) == (5000, 0)


def test_writing_an_impossible_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown kind of run 'torch'"):
        runs.write_config(tmp_path, runs.RunConfig("m", "torch", 5000, 0))
    with pytest.raises(ValueError, match="val_size must be 0 or between 10 and 59990"):
        runs.write_config(tmp_path, runs.RunConfig("m", "keras", 5, 0))
    assert not (tmp_path / "config.json").exists()


def test_finished_runs_skip_other_schemas_and_damaged_files(tmp_path):
    for name in ("new", "old", "damaged"):
        (tmp_path / name).mkdir()
    runs.write_config(tmp_path / "new", runs.RunConfig("seed-cnn", "keras", 5000, 0))
    runs.write_metrics(tmp_path / "new", runs.RunMetrics("seed-cnn", 0.99, 0.03, 0.98, 10000, 55000))
    (tmp_path / "old" / "metrics.json").write_text('{"model": "fast-cnn", "test_accuracy": 0.99}')
    (tmp_path / "damaged" / "metrics.json").write_text("{")
    found = runs.finished_runs(tmp_path)
    assert [(folder.name, config.kind, metrics.model) for folder, config, metrics in found] == [
        ("new", "keras", "seed-cnn")
    ]
    with pytest.raises(DigitsError, match="schema None, this version reads 1"):
        runs.read_metrics(tmp_path / "old")


def test_reports_name_the_commit_and_say_when_the_code_is_not_it(tmp_path):
    from digits.report import commit

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    assert commit(tmp_path) == "unknown"  # not a checkout
    git("init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "reader.py").write_text("CUT = 1\n")
    (tmp_path / "docs.md").write_text("figures\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    )
    sha = head.stdout.strip()
    assert commit(tmp_path / "src") == sha
    (tmp_path / "docs.md").write_text("new figures\n")  # a report rewriting its own page
    assert commit(tmp_path / "src") == sha
    (tmp_path / "src" / "reader.py").write_text("CUT = 2\n")
    assert commit(tmp_path / "src") == f"{sha} with uncommitted changes to src/"


def test_report_refuses_the_flags_of_other_benchmarks(capsys):
    assert main(["benchmark", "--report", "--sets", "drawn"]) == 2
    assert "--report scores the shipped models" in capsys.readouterr().err
    for argv, message in (
        (["--report", "--epochs", "3"], "--report scores the shipped models"),
        (["--real-world", "--epochs", "3"], "--epochs go with the training benchmark, not --real-world"),
        (["--sets", "drawn", "--scale", "0.1"], "--sets, --scale go with --real-world"),
    ):
        assert main(["benchmark", *argv]) == 2  # refused before any work: no data is read
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --report and --real-world exclude each other
        main(["benchmark", "--report", "--real-world"])


@pytest.mark.slow
def test_report_scores_the_shipped_models_and_rewrites_the_readme_table(tmp_path, monkeypatch, mnist_dir):
    from digits import report
    from digits.inference import DEFAULT_MODEL

    monkeypatch.setattr(report, "shipped_models", lambda: [("served by default", DEFAULT_MODEL.parent)])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text(f"# x\n\n{report.START}\nstale\n{report.END}\n\nafter\n")
    (tmp_path / "docs" / "real-world").mkdir(parents=True)
    real_world = {
        "model": "fast-cnn",
        "sets": [{"set": "drawn", "images": 300, "accuracy": 0.99, "not_a_digit": 0.0}],
    }
    (tmp_path / "docs" / "real-world" / "results.json").write_text(json.dumps(real_world))

    page = report.write_report("docs", mnist_dir, log=lambda *_: None)

    text = page.read_text()
    recorded = runs.read_metrics(DEFAULT_MODEL.parent).test_accuracy
    # Scored anew on the test set, it must match what the model's run recorded.
    assert f"| {100 * recorded:.2f}% |" in text and "Written by `digits benchmark --report` on " in text
    assert "| drawn | 300 | 99.00% | 0.00% | – |" in text
    assert (tmp_path / "docs" / "results.png").stat().st_size > 5_000
    readme = (tmp_path / "README.md").read_text()
    assert "stale" not in readme and readme.endswith(f"{report.END}\n\nafter\n")
    assert f"{100 * recorded:.2f}%" in readme.split(report.START)[1]


@pytest.mark.slow
def test_the_lesson_script_trains_evaluates_and_leaves_a_run_folder_digits_reads(tmp_path, mnist_dir):
    out = tmp_path / "lesson"
    command = [sys.executable, str(ROOT / "mnist_cnn.py"), "--epochs", "1", "--out", str(out)]
    done = subprocess.run(
        [*command, "--data-dir", str(mnist_dir)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "test accuracy   9" in done.stdout and "test R-squared  0.9" in done.stdout
    metrics = runs.read_metrics(out)
    assert metrics.test_accuracy > 0.97 and metrics.epochs == 1 and runs.read_config(out).kind == "keras"
    assert not (out / "backup").exists()  # the backup goes once the run finished
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "folder is not empty" in again.stderr  # finished work stays


# ---------------------------------------------------------------------------- one run per folder

_HOLD = """
import sys, time
from digits import runs
with runs.claimed(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()  # until the test lets go
"""


def test_a_claimed_folder_refuses_a_second_run_at_once_and_is_free_when_the_first_ends(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(runs.RunBusy, match=f"a run in process {holder.pid} is writing to this folder"):
            with runs.claimed(folder):
                pass
    finally:
        holder.kill()  # as kill -9 would: the kernel lets go of the lock
        holder.wait()
    with runs.claimed(folder):
        (folder / "config.json").write_text("{}")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]  # the lock file went with it


def test_a_claim_that_wrote_nothing_leaves_no_folder_and_leftovers_count_as_empty(tmp_path):
    with pytest.raises(RuntimeError):
        with runs.claimed(tmp_path / "new"):
            raise RuntimeError("the data could not be loaded")
    assert not (tmp_path / "new").exists()
    # What a run killed before its first write leaves: its lock file and an empty checkpoints/.
    killed = tmp_path / "killed"
    (killed / runs.CHECKPOINTS).mkdir(parents=True)
    (killed / runs.LOCK_FILE).write_text("12345")
    runs.check_new_folder(killed)
    (killed / runs.CHECKPOINTS / "checkpoint-001.keras").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="folder is not empty"):
        runs.check_new_folder(killed)


def test_a_damaged_checkpoint_is_named_as_damaged(tmp_path, mnist_dir, capsys):
    folder = tmp_path / "run"
    settings = {"model": "seed-cnn", "epochs": 2, "train_size": 100, "val_size": 1000}
    folder.mkdir()
    runs.write_config(folder, runs.RunConfig("seed-cnn", "keras", 1000, 0, 100, settings=settings))
    checkpoints = folder / runs.CHECKPOINTS
    checkpoints.mkdir()
    (checkpoints / "checkpoint-001.keras").write_bytes(b"PK\x03\x04 cut short")
    history = [{"epoch": 1, "loss": 1.0}]
    (checkpoints / runs.STATE_FILE).write_text(
        json.dumps({"epoch": 1, "checkpoint": "checkpoint-001.keras", "history": history})
    )
    assert main(["train", "--resume", str(folder), "--data-dir", str(mnist_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint-001.keras: damaged checkpoint (" in err
    assert f"remove {folder} and train again" in err
    (checkpoints / "checkpoint-001.keras").unlink()
    assert main(["train", "--resume", str(folder), "--data-dir", str(mnist_dir)]) == 1
    assert "checkpoint-001.keras: missing, though" in capsys.readouterr().err


@pytest.mark.slow
def test_two_trainings_racing_for_one_folder_one_proceeds_and_the_other_refuses(tmp_path, mnist_dir):
    out = tmp_path / "run"
    common = ["--epochs", "1", "--train-size", "500", "--val-size", "500", "--data-dir", str(mnist_dir)]
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "digits", "train", "--model", model, "--out", str(out), *common],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for model in ("seed-cnn", "fast-cnn")
    ]
    results = [(racer.wait(timeout=600), racer.stderr.read()) for racer in racers]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    winner = ("seed-cnn", "fast-cnn")[[code for code, _ in results].index(0)]
    loser_err = next(err for code, err in results if code == 1)
    assert "is writing to this folder" in loser_err or "folder is not empty" in loser_err
    # The folder is the winner's alone: its config, its metrics, its model.
    assert runs.read_config(out).model == winner and runs.read_metrics(out).model == winner
    assert not (out / runs.LOCK_FILE).exists()


def test_a_multi_worker_run_cannot_be_resumed_and_is_left_as_it_was(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    config = runs.RunConfig(
        "seed-cnn", "keras", 1000, 0, settings={"model": "seed-cnn", "distribute": "multi-worker"}
    )
    runs.write_config(folder, config)
    assert main(["train", "--resume", str(folder)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"digits: error: {folder}: a multi-worker run cannot be resumed; start it again with a new --out\n"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]
