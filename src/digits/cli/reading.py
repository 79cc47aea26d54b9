"""Commands that use trained models: evaluate, calibrate, export, predict, serve."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
from pathlib import Path

from digits.cli.flags import add_data_dir_argument


def add_evaluate(commands) -> None:
    """``digits evaluate``."""
    evaluate = commands.add_parser("evaluate", help="metrics of a trained model on MNIST")
    evaluate.add_argument("model", help="run or ensemble folder, .onnx, .keras or .skops file")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--tta", action="store_true", help="average over the image and 1-pixel shifts")
    add_data_dir_argument(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    """``digits evaluate``: a model's metrics on its own split and on the test set."""
    from digits import data, evaluation, log_stderr, runs
    from digits.inference import EnsembleClassifier, ShiftTTA, load_uncalibrated

    # The model's own probabilities, as training scored them in metrics.json; calibration changes
    # the loss and R-squared, never the accuracy.
    classifier = load_uncalibrated(args.model)
    if isinstance(classifier, EnsembleClassifier):
        classifier.progress = log_stderr
    if args.tta:
        classifier = ShiftTTA(classifier)
    # The split and training subset the model was trained on: its validation score is clean, and
    # its train accuracy is the one training reported.
    recorded = runs.read_config(classifier.path.parent)
    val_size, split_seed = recorded.split if recorded else runs.DEFAULT_SPLIT
    train_size = recorded.train_size if recorded else None
    prepared = data.prepare(args.data_dir, val_size, split_seed, train_size)
    metrics, _ = evaluation.evaluate(classifier, prepared, log_stderr)
    if args.json:
        print(json.dumps(dataclasses.asdict(metrics), indent=2))
    else:
        print(evaluation.format_text(metrics))
    return 0


def add_calibrate(commands) -> None:
    """``digits calibrate``."""
    calibrate = commands.add_parser(
        "calibrate",
        help="fit a trained model's confidence and 'not a digit' threshold on its validation split",
    )
    calibrate.add_argument("model", help="run folder (its config.json names the validation split)")
    add_data_dir_argument(calibrate)
    calibrate.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    """``digits calibrate``: fit a trained model's temperature and "not a digit" threshold on validation."""
    from digits import data as mnist
    from digits.calibration import fit
    from digits.inference import load_uncalibrated
    from digits.runs import recorded_split

    classifier = load_uncalibrated(args.model)
    folder = classifier.path.parent
    val_size, split_seed = recorded_split(folder)
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


def add_export(commands) -> None:
    """``digits export``."""
    from digits.export import FORMATS

    export = commands.add_parser(
        "export", help="write a trained Keras model as ONNX, LiteRT (TFLite) or a TensorFlow SavedModel"
    )
    export.add_argument("model", help="run or ensemble folder, or .keras file")
    export.add_argument("--format", required=True, choices=list(FORMATS), help="the format to write")
    export.add_argument(
        "--out",
        help="where to write (default: beside the model, as model.onnx, model.tflite or saved_model/;"
        " the ONNX file there is what predict, serve and evaluate then run)",
    )
    export.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    """``digits export``: one model file in another format."""
    from digits.export import export

    out = export(args.model, args.format, args.out)
    print(f"exported {args.model} as {args.format} to {out}")
    return 0


def add_predict(commands) -> None:
    """``digits predict``."""
    predict = commands.add_parser(
        "predict",
        help="read the digit (or, with --number, the number) in image files",
        usage="digits predict [-h] [--json] [--number] [MODEL] IMAGE [IMAGE ...]",
    )
    predict.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="MODEL: a run or ensemble folder, .onnx, .keras or .skops file (default: $DIGITS_MODEL, else"
        " the packaged model); then each IMAGE: a PNG, JPEG, GIF, BMP, WebP or TIFF file, or a 28x28"
        " .npy array",
    )
    predict.add_argument("--json", action="store_true", help="print one JSON object per file")
    predict.add_argument(
        "--number",
        action="store_true",
        help="read each image as a number of one or more digits written in a row, as the web app's"
        " whole-number mode does (POST /api/predict-number)",
    )
    predict.set_defaults(func=cmd_predict)


def _is_model(path: Path) -> bool:
    """A run or ensemble folder, a model file, or a missing path without a suffix (a mistyped run)."""
    return (
        path.is_dir()
        or path.suffix in (".onnx", ".keras", ".skops", ".joblib", ".pkl", ".pickle", ".json")
        or not (path.exists() or path.suffix)
    )


def _model_and_images(paths: list[str]) -> tuple[str | None, list[str]]:
    """``predict``'s paths split into the model (None: the default one) and the images."""
    if not _is_model(Path(paths[0])):
        return None, paths
    if len(paths) == 1:
        raise ValueError(f"no image to read: give image files after the model {paths[0]}")
    return paths[0], paths[1:]


def cmd_predict(args) -> int:
    """``digits predict``: the digit (or number) in each image file; exit 1 if any file could not be
    read."""
    import numpy as np

    from digits.images import ImageError
    from digits.inference import load_classifier, not_a_digit_below, resolve_model_path

    model, images = _model_and_images(args.paths)
    classifier = load_classifier(resolve_model_path(model))
    below = not_a_digit_below(classifier)

    def predict(images: np.ndarray) -> np.ndarray:
        return classifier.predict_proba(images[..., np.newaxis])

    if args.number:
        from digits.pairs import PairModel

        read, in_words = functools.partial(_read_number, pair_model=PairModel()), _number_in_words
    else:
        read, in_words = _read_digit, _digit_in_words
    failed = 0
    for file in images:
        try:
            answer = read(file, predict, below)
        except ImageError as exc:
            print(f"digits: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps({"file": file, **answer}) if args.json else f"{file}: {in_words(answer)}")
    return 1 if failed else 0


def _read_digit(file: str, predict, below: float) -> dict:
    """One image file's digit, as ``POST /api/predict`` reads it (without the pixels)."""
    from digits.inference import reading, second_look
    from digits.preprocess import read_image_file, thinned

    image, gray = read_image_file(file)
    answer = reading(predict(image[None])[0], below, image)
    again = second_look(answer, lambda: None if gray is None else thinned(gray), predict, below)
    return again[0] if again else answer


def _digit_in_words(answer: dict) -> str:
    if answer["not_a_digit"]:
        return f"not a digit (the closest is {answer['digit']}, confidence {answer['confidence']:.1%})"
    doubt = ": low, the image may not hold one clear digit" if answer["low_confidence"] else ""
    return f"{answer['digit']} (confidence {answer['confidence']:.1%}{doubt})"


def _read_number(file: str, predict, below: float, pair_model) -> dict:
    """One image file's number, as ``POST /api/predict-number`` reads it (without the pixels)."""
    from digits import number_reader
    from digits.images import ImageError
    from digits.preprocess import decode_image_file
    from digits.segmentation import segment_number

    if Path(file).suffix.lower() == ".npy":
        raise ImageError(f"{file}: a .npy array holds one 28x28 digit; --number reads image files")
    image = decode_image_file(file)  # its errors name the file
    try:
        marks = segment_number(image.gray)
    except ImageError as exc:
        exc.args = (f"{file}: {exc}",)
        raise
    probabilities = predict(number_reader.candidate_images(marks))
    marks, probabilities = number_reader.look_again(marks, probabilities, predict, below)
    pairs, triples = number_reader.pair_probabilities(marks, probabilities, below, pair_model)
    return number_reader.answer(marks, probabilities, below, image.scale, pairs, triples)[0]


def _number_in_words(answer: dict) -> str:
    if answer["not_a_number"]:
        marks = len(answer["digits"])
        return (
            "no number (its one mark is not a digit)"
            if marks == 1
            else f"no number (none of its {marks} marks is a digit)"
        )
    doubt = ": low, a digit or a join may be misread" if answer["low_confidence"] else ""
    return f"{answer['number']} (confidence {answer['confidence']:.1%}{doubt})"


def add_serve(commands) -> None:
    """``digits serve``."""
    serve = commands.add_parser("serve", help="run the web app and JSON API")
    serve.add_argument(
        "--model",
        help="run folder, .onnx, .keras or .skops file (default: $DIGITS_MODEL, else the packaged model)",
    )
    # The container sets these three through the environment (see Dockerfile).
    serve.add_argument(
        "--host",
        default=os.environ.get("DIGITS_HOST", "127.0.0.1"),
        help="address to listen on (default: $DIGITS_HOST, else 127.0.0.1)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=os.environ.get("DIGITS_PORT", "8000"),
        help="port to listen on (default: $DIGITS_PORT, else 8000)",
    )
    serve.add_argument(
        "--max-upload-mb", type=float, default=5.0, help="largest request body accepted, in MB (default: 5)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=os.environ.get("DIGITS_WORKERS", str(min(2, os.cpu_count() or 1))),
        help="server processes, each with its own model (default: $DIGITS_WORKERS, else 2, or 1 on a"
        " one-core machine)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from ORIGIN (e.g. https://example.org, or *) call the API; repeat for more"
        " (default: none, so browsers allow only the server's own page)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    serve.set_defaults(func=cmd_serve)


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
        cors_origins=tuple(args.cors_origin),
    )
    return 0
