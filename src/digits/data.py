"""MNIST files: find them, verify them, parse them, and prepare them for training.

Lookup order for the four IDX ``.gz`` files:

1. the ``data_dir`` argument (``--data-dir`` on the command line),
2. the ``DIGITS_DATA_DIR`` environment variable,
3. a per-user cache directory, filled by downloading from the public mirrors with pooch.

Every file is checked against its published SHA-256 before it is parsed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits import DigitsError

ENV_VAR = "DIGITS_DATA_DIR"
#: Where Debian's ``dataset-fashion-mnist`` puts Fashion-MNIST; ``$FASHION_MNIST_DIR`` overrides it.
FASHION_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))

#: File name -> published SHA-256 (the same bytes on every mirror).
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

_SUPPLY_HINT = f"point {ENV_VAR} or --data-dir at a folder holding the four MNIST .gz files"


class DataError(DigitsError):
    """A data file is missing, corrupted or malformed; the message says which and what to do."""


class MirrorsUnreachable(DataError):
    """No download mirror could be reached (offline, or blocked): the other files would fail alike."""


def cache_dir() -> Path:
    """The per-user cache directory the files are downloaded into."""
    import pooch

    return Path(pooch.os_cache("digits")) / "mnist"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Return the folder to read from and whether it is the download cache."""
    if data_dir:
        return Path(data_dir), False
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]), False
    return cache_dir(), True


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(name: str, folder: Path) -> Path:
    """Download one file into the cache; pooch writes to a temporary file and renames it when verified."""
    import pooch
    import requests

    errors, unreachable = [], True
    for mirror in MIRRORS:
        try:
            return Path(
                pooch.retrieve(
                    mirror + name,
                    known_hash=f"sha256:{SHA256[name]}",
                    fname=name,
                    path=folder,
                    progressbar=True,
                )
            )
        except Exception as exc:  # network errors come in many types; try the next mirror
            errors.append(f"{mirror}: {type(exc).__name__}")
            unreachable &= isinstance(exc, (requests.ConnectionError, requests.Timeout))
    raise (MirrorsUnreachable if unreachable else DataError)(
        f"could not download {name} from any mirror ({'; '.join(errors)}); "
        f"offline? {_SUPPLY_HINT} (expected sha256 {SHA256[name]})"
    )


def _existing_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path, bool]:
    """``resolve_data_dir``, refusing a given folder that is missing or not a folder.

    The cache is exempt: it is created by the first download.
    """
    folder, is_cache = resolve_data_dir(data_dir)
    if not is_cache and not folder.is_dir():
        problem = "not a folder" if folder.exists() else "no such folder"
        raise DataError(f"{folder}: {problem}; {_SUPPLY_HINT}")
    return folder, is_cache


def locate(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of one verified MNIST file, downloading it into the cache if needed."""
    folder, is_cache = _existing_data_dir(data_dir)
    path = folder / name
    try:
        present = path.is_file()
        actual = sha256_of(path) if present else None
    except OSError as exc:  # a file or folder this user may not read
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    if not present:
        if is_cache:
            return _download(name, folder)
        # Decompressed copies cannot be checked against the published checksums of the .gz files.
        raw = path.with_suffix("")
        found = f" (found {raw.name} uncompressed: the project reads the original .gz files)"
        raise DataError(
            f"{path}: file not found{found if raw.is_file() else ''}; {_SUPPLY_HINT} "
            f"(expected sha256 {SHA256[name]})"
        )
    if actual != SHA256[name]:
        where = "delete it to download it again" if is_cache else _SUPPLY_HINT
        raise DataError(
            f"{path}: checksum mismatch (expected sha256 {SHA256[name]}, got {actual}); "
            f"the file is corrupted or truncated: {where}"
        )
    return path


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes into an array, validating its header and length."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic >> 8 != 0x08:
        raise DataError(f"{path}: bad magic number 0x{magic:08x} (expected an unsigned-byte IDX file)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header says shape {shape} ({expected} bytes of data) but the file holds "
            f"{len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_pair(images_name: str, labels_name: str, data_dir) -> tuple[np.ndarray, np.ndarray]:
    # locate() has matched both files to the published checksums, so their shapes need no check.
    return read_idx(locate(images_name, data_dir)), read_idx(locate(labels_name, data_dir))


def load_mnist(data_dir: str | os.PathLike | None = None):
    """Load MNIST as uint8 arrays: ``(x_train, y_train), (x_test, y_test)``."""
    train = _read_pair("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", data_dir)
    test = _read_pair("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", data_dir)
    return train, test


def load_fashion(split: str) -> np.ndarray | None:
    """Fashion-MNIST's "train" or "t10k" images (Debian's ``dataset-fashion-mnist``), or None if missing.

    They are the project's examples of what is *not* a digit: training items teach the reader to say
    so, test items measure it.
    """
    path = FASHION_DIR / f"{split}-images-idx3-ubyte.gz"
    return read_idx(path) if path.is_file() else None


def check_files(data_dir: str | os.PathLike | None = None) -> list[dict]:
    """Verify each file; one report row per file with its path, status and checksum.

    A data folder that is missing or not a folder is one ``DataError``, not four failed rows.
    """
    folder, _ = _existing_data_dir(data_dir)
    rows, unreachable = [], None
    for name, expected in SHA256.items():
        row = {"file": name, "expected_sha256": expected}
        try:
            if unreachable and not (folder / name).is_file():  # no second round of failed downloads
                raise DataError(f"{name}: not downloaded, since no mirror could be reached for {unreachable}")
            path = locate(name, data_dir)
            row.update(path=str(path), status="ok", sha256=expected, shape=list(read_idx(path).shape))
        except DataError as exc:
            unreachable = unreachable or (name if isinstance(exc, MirrorsUnreachable) else None)
            row.update(status="error", error=str(exc))
        rows.append(row)
    return rows


def check_report(rows: list[dict]) -> list[str]:
    """The rows of ``check_files`` as lines to print: each file's checksum and shape, or its error."""
    return [
        f"  ok     {row['file']:<28} sha256 {row['sha256'][:16]}...  shape {tuple(row['shape'])}"
        if row["status"] == "ok"
        else f"  ERROR  {row['error']}"
        for row in rows
    ]


@dataclass
class PreparedData:
    """MNIST ready for a model: images float32 in [0, 1] shaped (N, 28, 28, 1), integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]."""
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


def stratified_subset(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a class-balanced random subset of ``size`` items."""
    from sklearn.model_selection import train_test_split

    if size >= len(y):
        return np.arange(len(y))
    idx, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    return np.sort(idx)


def check_seed(name: str, seed: int) -> None:
    """Raise ``ValueError`` for a seed outside the range numpy and scikit-learn accept."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"{name} must be between 0 and {2**32 - 1}, got {seed}")


def check_split(val_size: int, seed: int, train_size: int | None = None, names: dict | None = None) -> None:
    """Raise ``ValueError`` for a split ``prepare`` cannot make, before any data is loaded.

    ``names`` words the message for a caller's own flags, e.g. ``{"val_size": "--val-size"}``; the
    keys are the parameter names.
    """
    names = {"val_size": "val_size", "seed": "split_seed", "train_size": "train_size", **(names or {})}
    check_seed(names["seed"], seed)
    # A stratified split needs an image of every digit on both sides.
    if val_size and not 10 <= val_size <= 59990:
        raise ValueError(f"{names['val_size']} must be 0 or between 10 and 59990, got {val_size}")
    if train_size is not None and train_size < 10:
        raise ValueError(f"{names['train_size']} must be at least 10, got {train_size}")


def prepare(
    data_dir: str | os.PathLike | None = None,
    val_size: int = 5000,
    seed: int = 0,
    train_size: int | None = None,
) -> PreparedData:
    """Load, scale and split MNIST.

    The validation split is carved, stratified and seeded, from the 60,000 training images; the
    10,000 test images are left untouched. ``train_size`` keeps a stratified subset of the remaining
    training images, for quick runs.
    """
    from sklearn.model_selection import train_test_split

    check_split(val_size, seed, train_size)
    (x_train, y_train), (x_test, y_test) = load_mnist(data_dir)
    if val_size:
        x_train, x_val, y_train, y_val = train_test_split(
            x_train, y_train, test_size=val_size, stratify=y_train, random_state=seed
        )
    else:
        x_val, y_val = x_train[:0], y_train[:0]
    if train_size:
        keep = stratified_subset(y_train, train_size, seed)
        x_train, y_train = x_train[keep], y_train[keep]
    return PreparedData(
        scale(x_train),
        y_train.astype(np.int64),
        scale(x_val),
        y_val.astype(np.int64),
        scale(x_test),
        y_test.astype(np.int64),
    )
