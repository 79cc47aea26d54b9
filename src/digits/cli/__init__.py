"""The ``digits`` command line: one small module of commands per kind of work, one function per command.

``digits.cli.training`` makes and measures models (data, models, train, train-pairs, baselines,
ensemble, benchmark); ``digits.cli.reading`` uses them (evaluate, calibrate, predict, serve). Every
command turns expected failures into a one-line ``digits: error: ...`` message, never a traceback,
and exits 1 for a runtime failure (missing data, bad files, a busy port) or 2 for a usage error (bad
flags), as argparse does.
"""

from __future__ import annotations

import argparse
import os
import sys

# TensorFlow's C++ start-up chatter hides the output people came for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``digits`` subcommand."""
    from digits import __version__
    from digits.cli import reading, training

    parser = argparse.ArgumentParser(prog="digits", description="Handwritten digit recognition on MNIST.")
    parser.add_argument("--version", action="version", version=f"digits {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        training.add_data,
        training.add_models,
        training.add_train,
        training.add_train_pairs,
        reading.add_evaluate,
        reading.add_calibrate,
        reading.add_export,
        reading.add_predict,
        reading.add_serve,
        training.add_baselines,
        training.add_ensemble,
        training.add_benchmark,
    ):
        add(commands)
    return parser


#: The commands whose modules import Keras, and so TensorFlow, as they load (the others load it, quietly
#: too, only when a Keras model is loaded: see KerasClassifier).
_TENSORFLOW_COMMANDS = {"train", "benchmark", "export"}


#: The libraries of the ``[train]`` extra; the base install reads and serves digits without them.
_TRAINING_LIBRARIES = {"tensorflow", "keras", "sklearn", "matplotlib", "pooch", "tf2onnx", "onnx"}
_TRAINING_EXTRA = "the training libraries (TensorFlow, scikit-learn): pip install 'digits[train]'"


def _message(exc: Exception) -> str:
    """The one line to show for an expected failure."""
    # A system error reads "[Errno 13] Permission denied: 'x'"; say which path and why instead.
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror.lower()}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``digits`` console script."""
    from digits import DigitsError, import_tensorflow_quietly

    args = build_parser().parse_args(argv)
    try:
        if args.command in _TENSORFLOW_COMMANDS:
            import_tensorflow_quietly()
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows up here for buffered output, inside the try
        return code
    except BrokenPipeError:
        # The reader stopped early (| head): end quietly, with stdout on /dev/null so the exit-time
        # flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (DigitsError, OSError) as exc:  # runtime: missing or damaged files and data, a busy port
        print(f"digits: error: {_message(exc)}", file=sys.stderr)
        return 1
    except ValueError as exc:  # usage: a flag's value or a combination of flags the command refuses
        print(f"digits: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in _TRAINING_LIBRARIES:
            print(f"digits: error: digits {args.command} needs {_TRAINING_EXTRA}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
