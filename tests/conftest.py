"""Shared fixtures: the real MNIST folder, and synthetic IDX files."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from digits import data


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


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, extra: bytes = b"") -> Path:
    """Write a gzipped IDX file of unsigned bytes (with an optional wrong magic or trailing bytes)."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes() + extra)
    return path
