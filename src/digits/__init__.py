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
