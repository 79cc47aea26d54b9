"""Handwritten digit recognition on MNIST: data, models, training, evaluation, baselines and a web app."""

import json
import os
import re
import sys
from pathlib import Path

__version__ = "0.1.0"


class DigitsError(Exception):
    """An expected failure with a message meant for the user (bad data, bad input, bad flags)."""


#: The lines TensorFlow writes on every import: absl's preamble and its INFO lines (oneDNN, CPU features).
_START_UP_LINE = re.compile(r"WARNING: All log messages before absl::InitializeLog|I\d{4} ")


def log_stderr(message: str) -> None:
    """The progress printer of long commands: stderr, flushed, so stdout stays clean for ``--json``."""
    print(message, file=sys.stderr, flush=True)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow without the C++ start-up lines it writes to stderr on every run.

    TensorFlow 2.21 writes them before it reads ``TF_CPP_MIN_LOG_LEVEL``, so only the file descriptor
    can hold them back. Anything else it writes (warnings, errors) is passed on, and all of it if the
    import fails.
    """
    import sys
    import tempfile

    if "tensorflow" in sys.modules:
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError):  # no stderr at all (closed, or a daemon): nothing to keep clean
        import tensorflow  # noqa: F401

        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            import tensorflow  # noqa: F401

            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if failed or not _START_UP_LINE.match(line)))


def epochs_text(count: float) -> str:
    """``count`` epochs in words: "1 epoch", "0.3 epochs", "24 epochs"."""
    return f"{count:g} epoch{'' if count == 1 else 's'}"


def check_choice(what: str, value, choices) -> None:
    """Raise ValueError, listing the choices, unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


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
