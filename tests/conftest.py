"""Shared fixtures and helpers: the real MNIST folder, synthetic IDX files, a served model."""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digits import data

# Some tests run commands from other folders (tmp_path): a relative DIGITS_DATA_DIR, as in
# `DIGITS_DATA_DIR=../shared/data/mnist make test`, must keep pointing where it pointed here.
if os.environ.get(data.ENV_VAR):
    os.environ[data.ENV_VAR] = os.path.abspath(os.environ[data.ENV_VAR])


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder with the real MNIST files; skipped locally without it, a failure in CI."""
    folder = os.environ.get(data.ENV_VAR)
    if folder and all((Path(folder) / name).is_file() for name in data.SHA256):
        return Path(folder)
    message = f"real MNIST files not found: set {data.ENV_VAR} to the folder holding them"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def mnist_test():
    """The MNIST test images (uint8) and labels, when the data files are available."""
    try:
        (_, _), test = data.load_mnist()
    except data.DataError as exc:
        pytest.skip(f"MNIST files not available: {exc}")
    return test


def digit_rows(confidences: list[tuple[int, float]]) -> np.ndarray:
    """Probability rows, one per (digit, confidence): the rest spread evenly over the other digits."""
    rows = np.full((len(confidences), 10), 0.0)
    for row, (digit, p) in zip(rows, confidences, strict=True):
        row[:] = (1 - p) / 9
        row[digit] = p
    return rows


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, extra: bytes = b"") -> Path:
    """Write a gzipped IDX file of unsigned bytes (with an optional wrong magic or trailing bytes)."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes() + extra)
    return path


def dummy_run(folder: Path, config=None, metrics: bool = True) -> Path:
    """A run folder holding a trivial scikit-learn model and a config.json of the current schema.

    ``config`` overrides the recorded values (wrong ones included, to test how they are refused); a
    value that is not a dict is written as the whole file.
    """
    import json

    import skops.io
    from sklearn.dummy import DummyClassifier

    from digits import runs

    folder.mkdir(parents=True)
    skops.io.dump(DummyClassifier().fit(np.zeros((10, 784)), np.arange(10)), folder / "model.skops")
    recorded = {"model": "dummy", "kind": "scikit-learn", "val_size": 5000, "split_seed": 0}
    if config is None or isinstance(config, dict):
        recorded = {**recorded, "schema_version": runs.SCHEMA_VERSION, **(config or {})}
    else:
        recorded = config
    (folder / "config.json").write_text(json.dumps(recorded))
    if metrics:
        runs.write_metrics(folder, runs.RunMetrics("dummy", 0.1, 2.3, 0.0, 10000, 55000))
    return folder


def free_port() -> int:
    """A loopback port nothing listens on, for a server a test starts."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_png() -> bytes:
    """A drawn 1 (a vertical bar on black, 28x28) as PNG bytes: an upload every model reads as 1."""
    import io

    image = np.zeros((28, 28), np.uint8)
    image[4:24, 13:16] = 255
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


@contextlib.contextmanager
def serving(workers: int, log: Path | None = None):
    """``digits serve --workers N`` (the packaged model) as a real process on a free port, its output
    to ``log`` (default: nowhere): yields (process, url); stopped with SIGTERM at the end."""
    import subprocess
    import sys

    port = free_port()
    with open(log or os.devnull, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "digits", "serve", "--workers", str(workers), "--port", str(port)],
            cwd=Path(__file__).resolve().parents[1],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


def spiral(turns: float) -> np.ndarray:
    """A spiral of ``turns`` turns drawn dark on white with a pen, as the page or a photo gives it."""
    image = Image.new("L", (280, 280), 255)
    t = np.linspace(0, 2 * np.pi * turns, 400)
    r = 110 * t / t[-1]
    ImageDraw.Draw(image).line(
        list(zip(140 + r * np.cos(t), 140 + r * np.sin(t), strict=True)), fill=0, width=8
    )
    return np.asarray(image)
