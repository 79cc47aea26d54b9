"""MNIST loading: IDX parsing, checksums, lookup order, and preparation on the real files."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import dummy_run, write_idx

from digits import DigitsError, data, runs
from digits.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ---------------------------------------------------------------------------- IDX parsing (synthetic)


def test_read_idx_round_trips_images_and_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    assert np.array_equal(data.read_idx(write_idx(tmp_path / "i.gz", images)), images)
    assert np.array_equal(data.read_idx(write_idx(tmp_path / "l.gz", labels)), labels)


def test_read_idx_rejects_bad_magic(tmp_path):
    path = write_idx(tmp_path / "bad.gz", np.zeros((2, 28, 28)), magic=0x00000D03)
    with pytest.raises(data.DataError, match="bad magic number 0x00000d03"):
        data.read_idx(path)


def test_read_idx_rejects_data_shorter_than_header_says(tmp_path):
    path = tmp_path / "short.gz"
    write_idx(path, np.zeros((3, 28, 28)))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(data.DataError, match=r"header says shape \(3, 28, 28\)"):
        data.read_idx(path)


def test_read_idx_rejects_trailing_bytes(tmp_path):
    path = write_idx(tmp_path / "long.gz", np.zeros((2,)), extra=b"\x00")
    with pytest.raises(data.DataError, match="file holds 3"):
        data.read_idx(path)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28))
    path = write_idx(tmp_path / "cut.gz", noise)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(data.DataError, match="not a readable gzip file"):
        data.read_idx(path)


# ---------------------------------------------------------------------------- lookup and checksums


def test_missing_file_names_the_file_the_checksum_and_the_fix(tmp_path):
    with pytest.raises(data.DataError) as excinfo:
        data.locate("t10k-labels-idx1-ubyte.gz", tmp_path)
    message = str(excinfo.value)
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert data.SHA256["t10k-labels-idx1-ubyte.gz"] in message
    assert data.ENV_VAR in message and "--data-dir" in message
    assert "uncompressed" not in message


def test_missing_file_beside_its_decompressed_twin_says_the_gz_is_needed(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    with pytest.raises(data.DataError) as excinfo:
        data.locate("t10k-labels-idx1-ubyte.gz", tmp_path)
    message = str(excinfo.value)
    found = "(found t10k-labels-idx1-ubyte uncompressed: the project reads the original .gz files)"
    assert f"file not found {found}" in message
    assert data.ENV_VAR in message and "--data-dir" in message


@pytest.mark.parametrize(("make", "problem"), [(None, "no such folder"), ("write_text", "not a folder")])
@pytest.mark.parametrize("given", ["argument", "environment"])
def test_a_data_dir_that_is_no_folder_is_named_once_not_per_file(tmp_path, monkeypatch, make, problem, given):
    folder = tmp_path / "mnist"
    if make:
        folder.write_text("")
    if given == "environment":
        monkeypatch.setenv(data.ENV_VAR, str(folder))
    data_dir = folder if given == "argument" else None
    expected = f"{folder}: {problem}; point {data.ENV_VAR} or --data-dir at a folder"
    with pytest.raises(data.DataError, match="^" + re.escape(expected)):
        data.locate("t10k-labels-idx1-ubyte.gz", data_dir)
    with pytest.raises(data.DataError, match="^" + re.escape(expected)):
        data.check_files(data_dir)


def test_corrupted_file_fails_its_checksum(tmp_path, mnist_dir):
    name = "t10k-labels-idx1-ubyte.gz"
    corrupted = bytearray((mnist_dir / name).read_bytes())
    corrupted[100] ^= 0xFF
    (tmp_path / name).write_bytes(bytes(corrupted))
    with pytest.raises(data.DataError, match=f"checksum mismatch.*{data.SHA256[name]}"):
        data.locate(name, tmp_path)


def test_lookup_order_flag_then_environment_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.resolve_data_dir(tmp_path / "flag") == (tmp_path / "flag", False)
    assert data.resolve_data_dir(None) == (tmp_path / "env", False)
    monkeypatch.delenv(data.ENV_VAR)
    assert data.resolve_data_dir(None) == (data.cache_dir(), True)


def test_offline_download_says_what_to_set_and_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "cache_dir", lambda: tmp_path / "cache")
    # Port 9 on loopback refuses connections: the same failure as having no network.
    monkeypatch.setattr(data, "MIRRORS", ("http://127.0.0.1:9/",))
    with pytest.raises(data.DataError, match=f"offline\\? point {data.ENV_VAR} or --data-dir at"):
        data.locate("train-labels-idx1-ubyte.gz")
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())


def test_offline_check_tries_the_mirrors_once_not_once_per_file(tmp_path, monkeypatch, mnist_dir):
    import pooch

    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(data, "MIRRORS", ("http://127.0.0.1:9/",))  # refuses connections, like no network
    shutil.copy(mnist_dir / "train-labels-idx1-ubyte.gz", tmp_path)  # one file already in the cache
    tried = []
    retrieve = pooch.retrieve
    monkeypatch.setattr(pooch, "retrieve", lambda url, **kw: tried.append(url) or retrieve(url, **kw))
    rows = data.check_files()
    assert tried == ["http://127.0.0.1:9/train-images-idx3-ubyte.gz"]
    assert [row["status"] for row in rows] == ["error", "ok", "error", "error"]
    assert "offline?" in rows[0]["error"]
    assert rows[2]["error"] == (
        "t10k-images-idx3-ubyte.gz: not downloaded, since no mirror could be reached for"
        " train-images-idx3-ubyte.gz"
    )


def test_a_mirror_that_answers_without_the_file_does_not_stop_the_other_downloads(tmp_path, monkeypatch):
    import pooch
    import requests

    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "cache_dir", lambda: tmp_path)
    tried = []

    def not_found(url, **kwargs):
        tried.append(url)
        raise requests.HTTPError("404 Client Error: Not Found")

    monkeypatch.setattr(pooch, "retrieve", not_found)
    rows = data.check_files()
    assert len(tried) == 4 * len(data.MIRRORS)
    assert all("could not download" in row["error"] and "HTTPError" in row["error"] for row in rows)


def test_cache_files_are_verified_and_used_without_download(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(data, "MIRRORS", ("http://127.0.0.1:9/",))
    shutil.copy(mnist_dir / "t10k-labels-idx1-ubyte.gz", tmp_path)
    assert data.locate("t10k-labels-idx1-ubyte.gz") == tmp_path / "t10k-labels-idx1-ubyte.gz"


# ---------------------------------------------------------------------------- the real files


def test_real_files_have_the_published_shapes_and_label_counts(mnist_dir):
    (x_train, y_train), (x_test, y_test) = data.load_mnist(mnist_dir)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and x_train.max() == 255
    assert np.bincount(y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == TEST_COUNTS


def test_check_files_reports_all_four_ok(mnist_dir):
    rows = data.check_files(mnist_dir)
    assert [row["status"] for row in rows] == ["ok"] * 4
    assert {row["file"] for row in rows} == set(data.SHA256)


def test_prepare_scales_reshapes_and_splits_stratified_and_seeded(mnist_dir):
    prepared = data.prepare(mnist_dir, val_size=5000, seed=0)
    assert prepared.x_train.shape == (55000, 28, 28, 1) and prepared.x_val.shape == (5000, 28, 28, 1)
    assert prepared.x_test.shape == (10000, 28, 28, 1) and prepared.x_train.dtype == np.float32
    assert 0.0 == prepared.x_train.min() and prepared.x_train.max() == 1.0
    # Stratified: each digit's share of the validation set matches its share of all 60,000.
    expected = np.array(TRAIN_COUNTS) / 60000 * 5000
    assert np.abs(np.bincount(prepared.y_val) - expected).max() <= 1
    again = data.prepare(mnist_dir, val_size=5000, seed=0)
    assert np.array_equal(again.y_val, prepared.y_val) and np.array_equal(again.x_val, prepared.x_val)
    other = data.prepare(mnist_dir, val_size=5000, seed=1)
    assert not np.array_equal(other.y_val, prepared.y_val)
    subset = data.prepare(mnist_dir, val_size=5000, seed=0, train_size=1000)
    assert len(subset.x_train) == 1000 and np.bincount(subset.y_train).min() >= 85


def test_an_impossible_split_is_refused_before_any_data_is_read(tmp_path):
    for bad in (dict(val_size=5), dict(val_size=60000), dict(seed=-1), dict(train_size=3)):
        with pytest.raises(ValueError, match="must be"):
            data.prepare(tmp_path / "no-data-here", **bad)


def _data_preparation(*flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "data_preparation.py"), *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_data_preparation_help_names_the_download_default():
    done = _data_preparation("--help")
    assert "default: $DIGITS_DATA_DIR, else download to the cache" in " ".join(done.stdout.split())


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--seed", "-1"], "--seed must be between 0 and 4294967295, got -1"),
        (["--val-size", "5"], "--val-size must be 0 or between 10 and 59990, got 5"),
    ],
)
def test_data_preparation_refuses_bad_flags_by_their_names_before_touching_data(tmp_path, flags, expected):
    done = _data_preparation("--data-dir", str(tmp_path / "no-data-here"), *flags)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"data_preparation.py: error: {expected}\n"


def test_data_preparation_reports_each_missing_file_once_then_sums_up(tmp_path):
    done = _data_preparation("--data-dir", str(tmp_path))
    assert done.returncode == 1
    for name in data.SHA256:
        assert (done.stdout + done.stderr).count(f"{name}: file not found") == 1
    assert done.stderr == "data_preparation.py: error: 4 of the four files failed verification; see above\n"


def test_data_preparation_prints_each_sha256_and_refits_on_all_images(mnist_dir):
    done = _data_preparation("--data-dir", str(mnist_dir), "--val-size", "0")
    assert done.returncode == 0 and done.stderr == ""
    for name, sha256 in data.SHA256.items():
        assert f"ok     {name:<28} sha256 {sha256[:16]}..." in done.stdout
    assert "x_val   (0, 28, 28, 1)" in done.stdout
    assert "stratified" not in done.stdout
    assert done.stdout.endswith(
        "ready: no validation split (--val-size 0); training uses all 60,000 images\n"
    )


# ---------------------------------------------------------------------------- a run's recorded split


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"val_size": "x"}, 'val_size must be a whole number, got "x"'),
        ({"val_size": True}, "val_size must be a whole number, got true"),
        ({"val_size": 70000}, "val_size must be 0 or between 10 and 59990, got 70000"),
        ({"split_seed": -1}, "split_seed must be between 0 and 4294967295, got -1"),
    ],
)
def test_an_unusable_recorded_split_names_config_json_and_the_value(tmp_path, capsys, config, expected):
    run = dummy_run(tmp_path / "run", config)
    message = f"{run / 'config.json'}: {expected}"
    with pytest.raises(DigitsError, match="^" + re.escape(message)):
        runs.recorded_split(run)
    assert main(["evaluate", str(run), "--data-dir", str(tmp_path / "no-data-here")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"digits: error: {message}") and err.count("\n") == 1
    assert main(["train", "--resume", str(run)]) == 1  # resuming reads the same file
    err = capsys.readouterr().err
    assert err.startswith(f"digits: error: {message}") and err.count("\n") == 1


def test_a_data_file_that_cannot_be_read_is_one_data_error(tmp_path, monkeypatch):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data, "sha256_of", denied)
    with pytest.raises(
        data.DataError, match=r"train-images-idx3-ubyte.gz: cannot be read \(Permission denied\)"
    ):
        data.locate("train-images-idx3-ubyte.gz", tmp_path)


def test_data_preparation_into_a_closed_pipe_ends_quietly(mnist_dir):
    command = [sys.executable, str(ROOT / "data_preparation.py"), "--data-dir", str(mnist_dir)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # like `python data_preparation.py | head -0`
    err = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) != 0 and err == ""
