"""The run folder: what a training, a baseline or an ensemble leaves behind, read and written only here.

A run folder holds ``config.json`` (a :class:`RunConfig`: what was trained, on which split, with which
packages) and, once the run finished, ``metrics.json`` (a :class:`RunMetrics`), beside the model file
(``model.onnx``, ``model.keras``, ``model.skops`` or ``ensemble.json``), ``calibration.json`` (see
:mod:`digits.calibration`), plots and, for Keras runs, ``history.csv``, ``logs/`` and, while training,
``checkpoints/``. Both JSON files carry ``schema_version``; a file from another version is refused
with a message rather than half-read. A training holds the folder's ``.lock`` (see :func:`claimed`)
from before its first check to its end, so two runs can never write one folder.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from digits import DigitsError, read_json, write_json

SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CHECKPOINTS = "checkpoints"
#: In ``checkpoints/``: the newest complete checkpoint, its epoch and the history up to it.
STATE_FILE = "state.json"
#: Locked by the run writing the folder; the lock goes with the process, however it ends.
LOCK_FILE = ".lock"
#: ``(val_size, split_seed)`` of MNIST's default validation split: a bare model file's, when no
#: config.json says otherwise.
DEFAULT_SPLIT = (5000, 0)
#: Kinds of run: a Keras training, a scikit-learn baseline, an ensemble of runs.
KINDS = ("keras", "scikit-learn", "ensemble")


class RunExists(DigitsError):
    """The output folder already holds a run; refuse to overwrite it."""


class RunBusy(DigitsError):
    """Another process is writing the run folder."""


def _checked_version(values, path: Path) -> dict:
    if not isinstance(values, dict):
        raise DigitsError(f"{path}: not a run file (expected a JSON object)")
    found = values.get("schema_version")
    if found != SCHEMA_VERSION:
        raise DigitsError(
            f"{path}: written with run-folder schema {found!r}, this version reads {SCHEMA_VERSION};"
            " retrain the run with this version"
        )
    return values


@dataclass(frozen=True)
class RunConfig:
    """What a run trained and on which images: written when it starts, read to resume or score it."""

    model: str
    kind: str
    #: Validation images held out of MNIST's 60,000 training images, and the seed that drew them.
    val_size: int
    split_seed: int
    #: A stratified subset of the remaining training images, or None for all of them.
    train_size: int | None = None
    #: The settings of this kind of run (a Keras run's TrainConfig, a baseline's pipeline, an
    #: ensemble's members).
    settings: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    #: SHA-256 of the four MNIST files the run read.
    data_sha256: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def split(self) -> tuple[int, int]:
        """``(val_size, split_seed)``: runs on one split may be compared and ensembled on validation."""
        return self.val_size, self.split_seed

    @property
    def train_images(self) -> int:
        """How many images the run trained on."""
        return self.train_size or 60000 - self.val_size


@dataclass(frozen=True)
class RunMetrics:
    """A finished run's scores on MNIST (the test figures are for reports, never for choosing)."""

    model: str
    test_accuracy: float
    test_loss: float
    test_r2: float
    test_images: int
    train_images: int
    val_images: int = 0
    train_accuracy: float | None = None
    train_loss: float | None = None
    train_r2: float | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    epochs: int | None = None
    train_seconds: float | None = None
    #: Per-class precision, recall and F1 on the test set, and its confusion matrix.
    per_class: dict | None = None
    confusion_matrix: list | None = None
    #: Figures only some kinds record (a baseline's prediction speed and file size).
    extra: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


def write_config(folder: str | os.PathLike, config: RunConfig) -> None:
    """Write ``config.json`` into a run folder."""
    from digits.data import check_split

    if config.kind not in KINDS:
        raise ValueError(f"unknown kind of run {config.kind!r}; choose one of: {', '.join(KINDS)}")
    check_split(config.val_size, config.split_seed, config.train_size)
    write_json(Path(folder) / CONFIG_FILE, asdict(config))


def read_config(folder: str | os.PathLike) -> RunConfig | None:
    """The run's config, or None for a folder (or a bare model file's folder) without one."""
    from digits.data import check_split

    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return None
    values = _checked_version(read_json(path), path)
    try:
        config = RunConfig(**{f.name: values[f.name] for f in fields(RunConfig) if f.name in values})
        for name in ("val_size", "split_seed"):
            value = getattr(config, name)
            if isinstance(value, bool) or not isinstance(value, int):  # JSON true is an int to Python
                raise ValueError(f"{name} must be a whole number, got {json.dumps(value)}")
        check_split(config.val_size, config.split_seed, config.train_size)
    except (TypeError, ValueError) as exc:
        raise DigitsError(f"{path}: {exc}; restore the value the run was trained with") from None
    return config


def recorded_split(folder: str | os.PathLike) -> tuple[int, int]:
    """The validation split a model was trained beside; MNIST's default, (5000, 0), for a bare file."""
    config = read_config(folder)
    return config.split if config else DEFAULT_SPLIT


def write_metrics(folder: str | os.PathLike, metrics: RunMetrics) -> None:
    """Write ``metrics.json``, flat: the typed figures and the kind's extra ones side by side."""
    values = asdict(metrics)
    write_json(Path(folder) / METRICS_FILE, {**values.pop("extra"), **values})


def read_metrics(folder: str | os.PathLike) -> RunMetrics | None:
    """A finished run's metrics, or None where the run has none (not finished, or not a run)."""
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return None
    values = _checked_version(read_json(path), path)
    known = {f.name for f in fields(RunMetrics)} - {"extra"}
    try:
        return RunMetrics(
            **{k: v for k, v in values.items() if k in known},
            extra={k: v for k, v in values.items() if k not in known},
        )
    except TypeError as exc:
        raise DigitsError(f"{path}: not a run's metrics ({exc})") from None


def finished_runs(runs_dir: str | os.PathLike) -> list[tuple[Path, RunConfig | None, RunMetrics]]:
    """The finished runs directly under ``runs_dir``; folders of other versions or kinds are skipped."""
    found = []
    for folder in sorted(p.parent for p in Path(runs_dir).glob(f"*/{METRICS_FILE}")):
        try:
            metrics = read_metrics(folder)
            found.append((folder, read_config(folder), metrics))
        except DigitsError:
            continue  # another version's run, or a file that is not ours
    return found


def _is_leftover(path: Path) -> bool:
    """A lock, or an empty ``checkpoints/``: what a run killed before its first write leaves."""
    return path.name == LOCK_FILE or (path.name == CHECKPOINTS and path.is_dir() and not any(path.iterdir()))


def check_new_folder(path: str | os.PathLike, hint: str = "") -> None:
    """Raise FileExistsError unless ``path`` is absent or an empty folder: finished work is never overwritten.

    Call it before any long work, so a bad ``--out`` fails at once; ``hint`` adds another way out.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path}: exists and is not a folder; choose another --out")
    if path.is_dir() and not all(_is_leftover(p) for p in path.iterdir()):
        message = f"{path}: folder is not empty; choose another --out{hint} (nothing is overwritten)"
        raise FileExistsError(message)


@contextlib.contextmanager
def claimed(folder: str | os.PathLike):
    """Hold ``folder`` for one run, from before its checks to its end: a second run refuses at once.

    The folder is created if need be and its ``.lock`` locked with ``flock``, which the kernel releases
    when the process ends, even by ``kill -9``: a killed run can be resumed, a running one cannot be
    joined. A folder this call created and nothing else wrote to is removed again on the way out.
    """
    import fcntl

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder}: exists and is not a folder; choose another --out")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_FILE
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RunBusy(
                f"{folder}: a run in process {holder} is writing to this folder; wait for it to end or"
                " choose another --out"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield folder
        finally:
            lock_path.unlink(missing_ok=True)  # before the lock goes, so no one locks a removed file
            if created and not any(folder.iterdir()):
                folder.rmdir()


# ---------------------------------------------------------------------------- a Keras run's progress


def write_history(folder: Path, history: list[dict]) -> None:
    """``history.csv``: one row per epoch (loss, accuracy, seconds), replaced atomically."""
    path = Path(folder) / HISTORY_FILE
    columns = list(dict.fromkeys(key for row in history for key in row))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def read_history(folder: Path) -> list[dict]:
    """The rows of ``history.csv``, numbers as floats."""
    with open(Path(folder) / HISTORY_FILE) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def checkpoint_path(folder: Path, epoch: int) -> Path:
    """Where the checkpoint after ``epoch`` goes."""
    return Path(folder) / CHECKPOINTS / f"checkpoint-{epoch:03d}.keras"


def write_checkpoint_state(folder: Path, epoch: int, history: list[dict]) -> None:
    """Name the newest complete checkpoint, then drop the older ones.

    Called only after the checkpoint file exists, so a kill at any moment leaves a consistent pair.
    """
    name = checkpoint_path(folder, epoch).name
    write_json(
        Path(folder) / CHECKPOINTS / STATE_FILE, {"epoch": epoch, "checkpoint": name, "history": history}
    )
    write_history(folder, history)
    for old in (Path(folder) / CHECKPOINTS).glob("checkpoint-*.keras"):
        if old.name != name:
            old.unlink()


def read_checkpoint_state(folder: Path) -> tuple[Path, int, list[dict]] | None:
    """The newest checkpoint, its epoch and the history up to it; None before the first epoch ends."""
    path = Path(folder) / CHECKPOINTS / STATE_FILE
    if not path.is_file():
        return None
    state = read_json(path)
    try:
        checkpoint, epoch, history = (
            Path(folder) / CHECKPOINTS / state["checkpoint"],
            state["epoch"],
            state["history"],
        )
    except (KeyError, TypeError):
        raise DigitsError(
            f"{path}: damaged (not a checkpoint state); {_START_OVER.format(folder=folder)}"
        ) from None
    if not checkpoint.is_file():
        raise DigitsError(
            f"{checkpoint}: missing, though {path} names it; {_START_OVER.format(folder=folder)}"
        )
    return checkpoint, epoch, history


#: How to recover from a damaged checkpoint: the epochs since the last good one are lost either way.
_START_OVER = "remove {folder} and train again (the epochs it held cannot be recovered)"


def damaged_checkpoint(checkpoint: Path, reason: str) -> DigitsError:
    """The error for a checkpoint file that exists but cannot be loaded (truncated, overwritten)."""
    folder = checkpoint.parent.parent
    return DigitsError(f"{checkpoint}: damaged checkpoint ({reason}); {_START_OVER.format(folder=folder)}")


def remove_checkpoints(folder: Path) -> None:
    """Drop ``checkpoints/`` once the run's model and metrics are saved."""
    checkpoints = Path(folder) / CHECKPOINTS
    for leftover in checkpoints.iterdir():
        leftover.unlink()
    checkpoints.rmdir()


# ---------------------------------------------------------------------------- the machine


def cpu_name() -> str:
    """The processor's model name where Linux tells it, else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def machine() -> str:
    """The processor and core count, as reports name the machine."""
    return f"{cpu_name()}, {os.cpu_count()} CPUs"


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a run's numbers, and the machine."""
    import keras
    import numpy as np
    import sklearn
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "machine": machine(),
    }
