"""The ``digits`` command line: data, models, train, evaluate, predict (and more, one subcommand each).

Every command turns expected failures (missing data, bad files, bad flags) into a one-line
``digits: error: ...`` message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# TensorFlow's C++ start-up chatter hides the output people came for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="folder with the four MNIST .gz files (default: $DIGITS_DATA_DIR, else download to the cache)",
    )


def _print_json(value) -> None:
    print(json.dumps(value, indent=2))


# ---------------------------------------------------------------------------- commands


def cmd_data_check(args) -> int:
    from digits import data

    folder, is_cache = data.resolve_data_dir(args.data_dir)
    print(f"MNIST files in {folder}{' (download cache)' if is_cache else ''}:")
    rows = data.check_files(args.data_dir)
    for row in rows:
        if row["status"] == "ok":
            print(f"  ok     {row['file']:<28} sha256 {row['sha256'][:16]}...  shape {tuple(row['shape'])}")
        else:
            print(f"  ERROR  {row['error']}")
    bad = sum(row["status"] != "ok" for row in rows)
    print("all four files verified" if not bad else f"{bad} file(s) failed verification")
    return 1 if bad else 0


def cmd_models(args) -> int:
    from digits.models import MODELS

    for name, spec in MODELS.items():
        print(f"{name:<10} {spec.description}")
        print(
            f"{'':<10} defaults: {spec.epochs} epochs, batch {spec.batch_size}, "
            f"learning rate {spec.learning_rate}"
        )
    return 0


def cmd_train(args) -> int:
    from datetime import datetime

    from digits.training import TrainConfig, train

    config = TrainConfig(
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        augment=not args.no_augment,
        train_size=args.train_size,
        data_dir=args.data_dir,
    )
    if args.resume:
        out = Path(args.resume)
    elif args.out:
        out = Path(args.out)
    else:
        out = Path("runs") / f"{args.model}-{datetime.now():%Y%m%d-%H%M%S}"
    try:
        metrics = train(config, out, resume=bool(args.resume))
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the last completed epoch is saved; continue with: digits train --resume {out}",
            file=sys.stderr,
        )
        return 130
    print(
        f"train accuracy {metrics['train_accuracy']:.4%}  test accuracy {metrics['test_accuracy']:.4%}"
        f"  test R-squared {metrics['test_r2']:.4f}  ({metrics['train_seconds']:.0f} s of training)"
    )
    print(f"saved to {out}/")
    return 0


def cmd_evaluate(args) -> int:
    from digits import data, evaluation
    from digits.models import load_classifier

    classifier = load_classifier(args.model)
    run_config = classifier.path.parent / "config.json"
    split = json.loads(run_config.read_text()) if run_config.is_file() else {}
    prepared = data.prepare(args.data_dir, split.get("val_size", 5000), split.get("seed", 0))
    result = evaluation.evaluate(classifier, prepared)
    result.pop("test_probabilities")
    if args.json:
        _print_json(result)
    else:
        print(evaluation.format_text(result))
    return 0


def cmd_predict(args) -> int:
    import numpy as np

    from digits.models import load_classifier
    from digits.preprocess import ImageError, load_image

    classifier = load_classifier(args.model)
    failed = 0
    for file in args.images:
        try:
            image = load_image(file)
        except ImageError as exc:
            print(f"digits: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        probabilities = classifier.predict_proba(image[np.newaxis, ..., np.newaxis])[0]
        digit = int(probabilities.argmax())
        if args.json:
            print(
                json.dumps(
                    {
                        "file": file,
                        "digit": digit,
                        "confidence": float(probabilities[digit]),
                        "probabilities": [round(float(p), 6) for p in probabilities],
                    }
                )
            )
        else:
            print(f"{file}: {digit} (confidence {probabilities[digit]:.1%})")
    return 1 if failed else 0


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="digits", description="Handwritten digit recognition on MNIST.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data_parser = commands.add_parser("data", help="check the MNIST files")
    data_commands = data_parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = data_commands.add_parser("check", help="verify the four files' checksums and headers")
    _add_data_dir(check)
    check.set_defaults(func=cmd_data_check)

    models = commands.add_parser("models", help="list the model architectures and their defaults")
    models.set_defaults(func=cmd_models)

    train = commands.add_parser("train", help="train a model and write a run folder")
    train.add_argument("--model", default="seed-cnn", help="architecture (see: digits models)")
    train.add_argument("--epochs", type=int, help="number of epochs (default: the model's)")
    train.add_argument("--batch-size", type=int, help="batch size (default: the model's)")
    train.add_argument("--learning-rate", type=float, help="peak learning rate (default: the model's)")
    train.add_argument("--seed", type=int, default=0, help="random seed for split, init and augmentation")
    train.add_argument("--no-augment", action="store_true", help="train without data augmentation")
    train.add_argument("--train-size", type=int, help="train on a stratified subset of this many images")
    train.add_argument("--out", help="run folder to create (default: runs/MODEL-TIMESTAMP)")
    train.add_argument("--resume", metavar="DIR", help="continue an interrupted run from its last checkpoint")
    _add_data_dir(train)
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="metrics of a trained model on MNIST")
    evaluate.add_argument("model", help="run folder, .keras or .joblib file")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_data_dir(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    predict = commands.add_parser("predict", help="read the digit in image files")
    predict.add_argument("model", help="run folder, .keras or .joblib file")
    predict.add_argument("images", nargs="+", help="PNG/JPEG files or 28x28 .npy arrays")
    predict.add_argument("--json", action="store_true", help="print one JSON object per file")
    predict.set_defaults(func=cmd_predict)

    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``digits`` console script."""
    from digits import DigitsError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DigitsError, FileNotFoundError, ValueError) as exc:
        print(f"digits: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
