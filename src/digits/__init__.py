"""Handwritten digit recognition on MNIST: data, models, training, evaluation, baselines and a web app."""

import json
import os
from pathlib import Path

__version__ = "0.1.0"


class DigitsError(Exception):
    """An expected failure with a message meant for the user (bad data, bad input, bad flags)."""


def read_json(path: Path):
    """Read a JSON file the project wrote; a damaged one is a ``DigitsError`` that names it."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise DigitsError(f"{path}: not valid JSON ({exc}); the file is damaged") from exc


def write_json(path: Path, value) -> None:
    """Write ``value`` as indented JSON so that a crash leaves the old file or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def check_new_folder(path: str | Path, flag: str = "--out", hint: str = "") -> None:
    """Raise FileExistsError unless ``path`` is absent or an empty folder: finished work is never overwritten.

    Call it before any long work, so a bad ``flag`` value fails at once; ``hint`` adds another way out.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path}: exists and is not a folder; choose another {flag}")
    if path.is_dir() and any(path.iterdir()):
        message = f"{path}: folder is not empty; choose another {flag}{hint} (nothing is overwritten)"
        raise FileExistsError(message)
