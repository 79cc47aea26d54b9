"""The ``digits`` command line: data, models, train, evaluate, predict (and more, one subcommand each).

Every command turns expected failures (missing data, bad files, bad flags) into a one-line
``digits: error: ...`` message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

# TensorFlow's C++ start-up chatter hides the output people came for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--data-dir`` flag, worded once for every command and script that reads MNIST."""
    parser.add_argument(
        "--data-dir",
        help="folder with the four MNIST .gz files (default: $DIGITS_DATA_DIR, else download to the cache)",
    )


def _print_json(value) -> None:
    print(json.dumps(value, indent=2))


# ---------------------------------------------------------------------------- commands


def cmd_data_check(args) -> int:
    """``digits data check``: verify the four files; exit 1 if any fails."""
    from digits import data

    folder, is_cache = data.resolve_data_dir(args.data_dir)
    print(f"MNIST files in {folder}{' (download cache)' if is_cache else ''}:")
    rows = data.check_files(args.data_dir)
    print("\n".join(data.check_report(rows)))
    bad = sum(row["status"] != "ok" for row in rows)
    print("all four files verified" if not bad else f"{bad} file(s) failed verification")
    return 1 if bad else 0


def cmd_models(args) -> int:
    """``digits models``: each architecture and its default recipe."""
    from digits import epochs_text
    from digits.models import MODELS

    width = max(map(len, MODELS)) + 2
    for name, spec in MODELS.items():
        warmup = f", warm-up {epochs_text(spec.warmup_epochs)}" if spec.warmup_epochs else ""
        smoothing = f", label smoothing {spec.label_smoothing:g}" if spec.label_smoothing else ""
        average = f", weights averaged (EMA {spec.ema_momentum:g})" if spec.ema_momentum else ""
        print(f"{name:<{width}}{spec.description}")
        print(
            f"{'':<{width}}defaults: {epochs_text(spec.epochs)}, batch {spec.batch_size}, Adam "
            f"{spec.learning_rate:g} {spec.schedule}{warmup}{smoothing}, augmentation {spec.augment}{average}"
        )
    return 0


#: ``digits train`` flags that set up a new run; a resumed run keeps the settings in its config.json.
_RUN_SETTINGS = {
    "model": "--model",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "learning_rate": "--learning-rate",
    "seed": "--seed",
    "split_seed": "--split-seed",
    "val_size": "--val-size",
    "augment": "--augment",
    "train_size": "--train-size",
    "distribute": "--distribute",
    "teacher": "--teacher",
    "ema_momentum": "--ema",
    "negatives": "--negatives",
}


def _check_tf_config() -> None:
    """TensorFlow reads TF_CONFIG when the multi-worker strategy starts; its JSON errors do not name it."""
    value = os.environ.get("TF_CONFIG")
    if not value:
        return
    try:
        json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the TF_CONFIG environment variable is not valid JSON ({exc})") from None


def _interrupted(out: Path) -> str:
    """What to tell someone who pressed Ctrl-C during ``digits train``."""
    if (out / "checkpoints" / "state.json").is_file():
        return f"the last completed epoch is saved; continue with: digits train --resume {out}"
    if (out / "config.json").is_file():
        return f"no epoch was completed yet; start it over with: digits train --resume {out}"
    return "training had not started, so nothing was saved; run the same command again"


def cmd_train(args) -> int:
    """``digits train``: train a new run, or continue one with ``--resume``."""
    from datetime import datetime

    from digits.data import read_run_config
    from digits.training import TrainConfig, train

    # The settings given (their flags default to None, so even an explicit default value counts);
    # the others take TrainConfig's defaults.
    given = {key: getattr(args, key) for key in _RUN_SETTINGS if getattr(args, key) is not None}
    if args.no_augment:
        given["augment"] = "none"
    config = TrainConfig(**given, data_dir=args.data_dir)
    if args.resume:
        flags = [flag for key, flag in _RUN_SETTINGS.items() if getattr(args, key) is not None]
        flags += [flag for flag, value in (("--no-augment", args.no_augment), ("--out", args.out)) if value]
        if flags:
            raise ValueError(
                f"--resume continues a run with the settings in its config.json; it cannot be combined"
                f" with {', '.join(flags)} (only --data-dir may be given)"
            )
        out = Path(args.resume)
        distribute = read_run_config(out).get("distribute")
    else:
        out = Path(args.out or Path("runs") / f"{config.model}-{datetime.now():%Y%m%d-%H%M%S}")
        distribute = config.distribute
    if distribute == "multi-worker":
        _check_tf_config()
    try:
        metrics = train(config, out, resume=bool(args.resume))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_interrupted(out)}", file=sys.stderr)
        return 130
    print(
        f"train accuracy {metrics['train_accuracy']:.4%}  test accuracy {metrics['test_accuracy']:.4%}"
        f"  test R-squared {metrics['test_r2']:.4f}  ({metrics['train_seconds']:.0f} s of training)"
    )
    print(f"saved to {out}/")
    return 0


def cmd_evaluate(args) -> int:
    """``digits evaluate``: a model's metrics on its own split and on the test set."""
    from digits import data, evaluation, log_stderr
    from digits.models import EnsembleClassifier, ShiftTTA, load_uncalibrated

    # The model's own probabilities, as training scored them in metrics.json; calibration changes
    # the loss and R-squared, never the accuracy.
    classifier = load_uncalibrated(args.model)
    if isinstance(classifier, EnsembleClassifier):
        classifier.progress = log_stderr
    if args.tta:
        classifier = ShiftTTA(classifier)
    # The split and training subset the model was trained on: its validation score is clean, and
    # its train accuracy is the one training reported.
    recorded = data.read_run_config(classifier.path.parent)
    val_size, split_seed = data.split_of(recorded, classifier.path.parent / "config.json")
    prepared = data.prepare(args.data_dir, val_size, split_seed, recorded.get("train_size"))
    result = evaluation.evaluate(classifier, prepared, log_stderr)
    result.pop("test_probabilities")
    if args.json:
        _print_json(result)
    else:
        print(evaluation.format_text(result))
    return 0


def cmd_calibrate(args) -> int:
    """``digits calibrate``: fit a trained model's temperature and "not a digit" threshold on validation."""
    from digits import data as mnist
    from digits.calibration import fit
    from digits.models import load_uncalibrated

    classifier = load_uncalibrated(args.model)
    folder = classifier.path.parent
    val_size, split_seed = mnist.recorded_split(folder)
    if not val_size:
        raise ValueError(f"{folder}: trained on all 60,000 images, so no validation split is left to fit on")
    data = mnist.prepare(args.data_dir, val_size, split_seed)
    calibration = fit(classifier, data.x_val, data.y_val, None)
    calibration.save(folder)
    print(
        f"temperature {calibration.temperature:.3f}, not a digit below {calibration.not_a_digit_below:.3f}"
        f" ({calibration.fitted_on['clean_digits_rejected']:.2%} of clean validation digits);"
        f" saved to {folder / 'calibration.json'}"
    )
    return 0


def _is_model(path: Path) -> bool:
    """A run or ensemble folder, a model file, or a missing path without a suffix (a mistyped run)."""
    return (
        path.is_dir() or path.suffix in (".keras", ".joblib", ".json") or not (path.exists() or path.suffix)
    )


def _model_and_images(paths: list[str]) -> tuple[str | None, list[str]]:
    """``predict``'s paths split into the model (None: the default one) and the images."""
    if not _is_model(Path(paths[0])):
        return None, paths
    if len(paths) == 1:
        raise ValueError(f"no image to read: give image files after the model {paths[0]}")
    return paths[0], paths[1:]


def cmd_predict(args) -> int:
    """``digits predict``: the digit in each image file; exit 1 if any file could not be read."""
    import numpy as np

    from digits.models import load_classifier, not_a_digit_below, reading, resolve_model_path
    from digits.preprocess import ImageError, load_image

    model, images = _model_and_images(args.paths)
    classifier = load_classifier(resolve_model_path(model))
    failed = 0
    for file in images:
        try:
            image = load_image(file)
        except ImageError as exc:
            print(f"digits: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        probabilities = classifier.predict_proba(image[np.newaxis, ..., np.newaxis])[0]
        answer = reading(probabilities, not_a_digit_below(classifier))
        if args.json:
            print(json.dumps({"file": file, **answer}))
        elif answer["not_a_digit"]:
            closest = f"the closest is {answer['digit']}, confidence {answer['confidence']:.1%}"
            print(f"{file}: not a digit ({closest})")
        else:
            doubt = ": low, the image may not hold one clear digit" if answer["low_confidence"] else ""
            print(f"{file}: {answer['digit']} (confidence {answer['confidence']:.1%}{doubt})")
    return 1 if failed else 0


def cmd_serve(args) -> int:
    """``digits serve``: the web app and JSON API."""
    from digits.server import serve

    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0):
        raise ValueError(f"--max-upload-mb must be positive and finite, got {args.max_upload_mb}")
    serve(
        args.model,
        host=args.host,
        port=args.port,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        access_log=args.access_log,
        workers=args.workers,
    )
    return 0


def cmd_baselines(args) -> int:
    """``digits baselines``: train the scikit-learn baselines and compare them with the CNN runs."""
    from digits.baselines import BASELINES, BaselineConfig, format_table, train_all, write_report

    # Raw and deskewed runs get their own default folders, so one never replaces the other.
    args.out = args.out or ("runs/baselines-deskew" if args.deskew else "runs/baselines")
    config = BaselineConfig(
        models=args.models or list(BASELINES),
        deskew=args.deskew,
        train_size=args.train_size,
        seed=args.seed,
        data_dir=args.data_dir,
    )
    results = train_all(config, args.out)
    written = write_report(results, args.out, args.cnn_runs)
    if args.json:
        _print_json(results)
    else:
        print(format_table(results))
        files = ", ".join(["results.json", *(path.name for path in written)])
        print(f"saved to {args.out}/ (one folder per model, {files})")
    return 0


def cmd_ensemble(args) -> int:
    """``digits ensemble``: average trained models and score the result."""
    from digits.ensemble import build_ensemble

    metrics = build_ensemble(args.members, args.out, data_dir=args.data_dir, tta=args.tta)
    validation = (
        f"validation accuracy {metrics['val_accuracy']:.4%}"
        if "val_accuracy" in metrics
        else "no validation score (a member was trained on all 60,000 images)"
    )
    print(
        f"{metrics['model']}\n{validation}  test accuracy {metrics['test_accuracy']:.4%}"
        f"  test R-squared {metrics['test_r2']:.4f}\nsaved to {args.out}/"
    )
    return 0


def cmd_benchmark(args) -> int:
    """``digits benchmark``: the reference and our models trained side by side, or ``--real-world``."""
    if args.real_world:
        from digits.realworld_benchmark import headline, run_real_world

        rows = run_real_world(
            args.model, args.out or "runs/real-world", args.data_dir, args.seed, args.sets, args.scale
        )
        print(headline(rows))
        return 0
    if args.model or args.sets or args.scale != 1.0:
        raise ValueError("--model, --sets and --scale go with --real-world")
    from digits.benchmark import run_benchmark

    args.out = args.out or "runs/benchmark"
    run_benchmark(
        args.models, args.out, args.data_dir, args.seed, epochs=args.epochs, train_size=args.train_size
    )
    return 0


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``digits`` subcommand."""
    from digits.models import AUGMENTATIONS, STRATEGIES

    parser = argparse.ArgumentParser(prog="digits", description="Handwritten digit recognition on MNIST.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data_parser = commands.add_parser("data", help="check the MNIST files")
    data_commands = data_parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = data_commands.add_parser("check", help="verify the four files' checksums and headers")
    add_data_dir_argument(check)
    check.set_defaults(func=cmd_data_check)

    models = commands.add_parser("models", help="list the model architectures and their defaults")
    models.set_defaults(func=cmd_models)

    train = commands.add_parser("train", help="train a model and write a run folder")
    # Run settings default to None: TrainConfig fills in the defaults, and --resume can tell what was given.
    train.add_argument("--model", help="architecture (default: seed-cnn; see: digits models)")
    train.add_argument("--epochs", type=int, help="number of epochs (default: the model's)")
    train.add_argument("--batch-size", type=int, help="batch size (default: the model's)")
    train.add_argument("--learning-rate", type=float, help="peak learning rate (default: the model's)")
    train.add_argument(
        "--seed", type=int, help="random seed for initialisation, shuffling and augmentation (default: 0)"
    )
    train.add_argument(
        "--split-seed",
        type=int,
        help="random seed of the validation split (default: 0; keep it, so runs compare and ensemble"
        " on one split)",
    )
    train.add_argument(
        "--val-size",
        type=int,
        help="validation images held out of the 60,000 (default: 5000; 0: train on all of them, once a"
        " recipe is chosen)",
    )
    train.add_argument("--augment", choices=AUGMENTATIONS, help="augmentation recipe (default: the model's)")
    train.add_argument(
        "--no-augment", action="store_true", help="train without augmentation (--augment none)"
    )
    train.add_argument(
        "--distribute",
        choices=STRATEGIES,
        help="tf.distribute: mirrored (all GPUs, or 2 logical CPUs) or multi-worker (machines in TF_CONFIG)",
    )
    train.add_argument("--train-size", type=int, help="train on a stratified subset of this many images")
    train.add_argument(
        "--teacher",
        metavar="DIR",
        help="knowledge distillation: a trained run or ensemble whose probabilities for the training images"
        " replace their labels as targets (it must share the run's validation split)",
    )
    train.add_argument(
        "--ema",
        dest="ema_momentum",
        type=float,
        metavar="MOMENTUM",
        help="end on an exponential moving average of the weights with this momentum, such as 0.999"
        " (default: the model's; 0: none)",
    )
    train.add_argument(
        "--negatives",
        type=int,
        help="add this many generated non-digit images (Fashion-MNIST training items, letters, marks)"
        " so the model learns to answer 'not a digit' (default: 0)",
    )
    train.add_argument("--out", help="run folder to create (default: runs/MODEL-TIMESTAMP)")
    train.add_argument(
        "--resume",
        metavar="DIR",
        help="continue an interrupted run from its last checkpoint, with its own settings (only --data-dir"
        " may be given too)",
    )
    add_data_dir_argument(train)
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="metrics of a trained model on MNIST")
    evaluate.add_argument("model", help="run or ensemble folder, .keras or .joblib file")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--tta", action="store_true", help="average over the image and 1-pixel shifts")
    add_data_dir_argument(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    calibrate = commands.add_parser(
        "calibrate",
        help="fit a trained model's confidence and 'not a digit' threshold on its validation split",
    )
    calibrate.add_argument("model", help="run folder (its config.json names the validation split)")
    add_data_dir_argument(calibrate)
    calibrate.set_defaults(func=cmd_calibrate)

    predict = commands.add_parser(
        "predict",
        help="read the digit in image files",
        usage="digits predict [-h] [--json] [MODEL] IMAGE [IMAGE ...]",
    )
    predict.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="MODEL: a run or ensemble folder, .keras or .joblib file (default: $DIGITS_MODEL, else the"
        " packaged model); then each IMAGE: a PNG, JPEG, GIF, BMP, WebP or TIFF file, or a 28x28 .npy array",
    )
    predict.add_argument("--json", action="store_true", help="print one JSON object per file")
    predict.set_defaults(func=cmd_predict)

    serve = commands.add_parser("serve", help="run the web app and JSON API")
    serve.add_argument(
        "--model", help="run folder, .keras or .joblib file (default: $DIGITS_MODEL, else the packaged model)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    serve.add_argument(
        "--max-upload-mb", type=float, default=5.0, help="largest request body accepted, in MB (default: 5)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="server processes, each with its own model (default: 2, or 1 on a one-core machine)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    serve.set_defaults(func=cmd_serve)

    baselines = commands.add_parser("baselines", help="train and compare scikit-learn baselines")
    baselines.add_argument(
        "--models", nargs="+", metavar="NAME", help="logreg, knn, svm, rf and/or mlp (default: all)"
    )
    baselines.add_argument("--deskew", action="store_true", help="deskew the images first (all models)")
    baselines.add_argument("--train-size", type=int, help="train on a stratified subset of this many images")
    baselines.add_argument("--seed", type=int, default=0, help="random seed for the split and the models")
    baselines.add_argument("--json", action="store_true", help="print the metrics as JSON")
    baselines.add_argument(
        "--out", help="new output folder (default: runs/baselines, or runs/baselines-deskew with --deskew)"
    )
    baselines.add_argument(
        "--cnn-runs", default="runs", metavar="DIR", help="CNN run folders to compare with (default: runs)"
    )
    add_data_dir_argument(baselines)
    baselines.set_defaults(func=cmd_baselines)

    ensemble = commands.add_parser("ensemble", help="average the probabilities of trained models")
    ensemble.add_argument("--members", nargs="+", required=True, metavar="DIR", help="trained run folders")
    ensemble.add_argument("--out", required=True, help="new folder for the ensemble and its metrics")
    ensemble.add_argument("--tta", action="store_true", help="each member also averages over shifts")
    add_data_dir_argument(ensemble)
    ensemble.set_defaults(func=cmd_ensemble)

    benchmark = commands.add_parser(
        "benchmark",
        help="train the Keras reference and our models side by side, or (--real-world) measure how a"
        " trained model reads independent handwriting",
    )
    benchmark.add_argument(
        "--real-world",
        action="store_true",
        help="read other writers' digits, canvas drawings, photos, numbers and non-digits through the app",
    )
    benchmark.add_argument(
        "--model", help="with --real-world: the model to measure (default: the served one)"
    )
    benchmark.add_argument(
        "--sets", nargs="+", metavar="SET", help="with --real-world: only these sets (default: all)"
    )
    benchmark.add_argument(
        "--scale", type=float, default=1.0, help="with --real-world: a fraction of each set (quick looks)"
    )
    benchmark.add_argument(
        "--models",
        nargs="+",
        default=["keras-example", "fast-cnn", "seed-cnn"],
        help="models to train, each with its default recipe (default: keras-example fast-cnn seed-cnn)",
    )
    benchmark.add_argument(
        "--out",
        help="new folder for runs, table and plot (default: runs/benchmark), or for the real-world report"
        " (default: runs/real-world)",
    )
    benchmark.add_argument("--seed", type=int, default=0, help="random seed for every run")
    benchmark.add_argument("--epochs", type=int, help="override every model's epochs (quick looks only)")
    benchmark.add_argument("--train-size", type=int, help="train on a subset (quick looks only)")
    add_data_dir_argument(benchmark)
    benchmark.set_defaults(func=cmd_benchmark)

    return parser


#: The commands whose modules import Keras, and so TensorFlow, as they load (the others load it, quietly
#: too, only when a Keras model is loaded: see KerasClassifier).
_TENSORFLOW_COMMANDS = {"train", "benchmark"}


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
    except (DigitsError, OSError, ValueError) as exc:  # files that cannot be read or written included
        print(f"digits: error: {_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
