"""Commands that make and measure models: data, models, train, train-pairs, baselines, ensemble,
benchmark."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from digits.cli.flags import add_data_dir_argument


def _print_json(value) -> None:
    print(json.dumps(value, indent=2))


def add_data(commands) -> None:
    """``digits data check``."""
    data_parser = commands.add_parser("data", help="check the MNIST files")
    data_commands = data_parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = data_commands.add_parser("check", help="verify the four files' checksums and headers")
    add_data_dir_argument(check)
    check.set_defaults(func=cmd_data_check)


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


def add_models(commands) -> None:
    """``digits models``."""
    models = commands.add_parser("models", help="list the model architectures and their defaults")
    models.set_defaults(func=cmd_models)


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
    "ema_momentum": "--ema",
    "negatives": "--negatives",
}


def add_train(commands) -> None:
    """``digits train``."""
    from digits.models import AUGMENTATIONS, STRATEGIES

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
        "--distribute",
        choices=STRATEGIES,
        help="tf.distribute: mirrored (all GPUs, or 2 logical CPUs) or multi-worker (machines in TF_CONFIG)",
    )
    train.add_argument("--train-size", type=int, help="train on a stratified subset of this many images")
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
    from digits import runs

    if (out / runs.CHECKPOINTS / runs.STATE_FILE).is_file():
        return f"the last completed epoch is saved; continue with: digits train --resume {out}"
    if (out / runs.CONFIG_FILE).is_file():
        return f"no epoch was completed yet; start it over with: digits train --resume {out}"
    return "training had not started, so nothing was saved; run the same command again"


def cmd_train(args) -> int:
    """``digits train``: train a new run, or continue one with ``--resume``."""
    from datetime import datetime

    from digits.training import TrainConfig, train

    # The settings given (their flags default to None, so even an explicit default value counts);
    # the others take TrainConfig's defaults.
    given = {key: getattr(args, key) for key in _RUN_SETTINGS if getattr(args, key) is not None}
    config = TrainConfig(**given, data_dir=args.data_dir)
    if args.resume:
        flags = [flag for key, flag in _RUN_SETTINGS.items() if getattr(args, key) is not None]
        flags += ["--out"] if args.out else []
        if flags:
            raise ValueError(
                f"--resume continues a run with the settings in its config.json; it cannot be combined"
                f" with {', '.join(flags)} (only --data-dir may be given)"
            )
        out = Path(args.resume)
    else:
        out = Path(args.out or Path("runs") / f"{config.model}-{datetime.now():%Y%m%d-%H%M%S}")
    if config.distribute == "multi-worker":  # a resumed one is refused by train()
        _check_tf_config()
    try:
        metrics = train(config, out, resume=bool(args.resume))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_interrupted(out)}", file=sys.stderr)
        return 130
    print(
        f"train accuracy {metrics.train_accuracy:.4%}  test accuracy {metrics.test_accuracy:.4%}"
        f"  test R-squared {metrics.test_r2:.4f}  ({metrics.train_seconds:.0f} s of training)"
    )
    print(f"saved to {out}/")
    return 0


def add_train_pairs(commands) -> None:
    """``digits train-pairs``."""
    pairs = commands.add_parser(
        "train-pairs", help="train the model that reads two touching digits of a number whole"
    )
    pairs.add_argument("--out", default="runs/pair-model", help="folder to write (default: runs/pair-model)")
    pairs.add_argument("--epochs", type=int, default=8, help="epochs, each on fresh marks (default: 8)")
    pairs.add_argument("--per-epoch", type=int, default=50_000, help="marks made per epoch (default: 50000)")
    pairs.add_argument(
        "--negatives", type=int, default=5_000, help="generated non-digits to train on (default: 5000)"
    )
    pairs.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_data_dir_argument(pairs)
    pairs.set_defaults(func=cmd_train_pairs)


def cmd_train_pairs(args) -> int:
    """``digits train-pairs``: train the pair model (``digits.pairs``) into a new folder."""
    from digits import pairs, runs
    from digits.data import check_seed

    for flag, value, least in (("--epochs", args.epochs, 1), ("--per-epoch", args.per_epoch, 128)):
        if value < least:
            raise ValueError(f"{flag} must be at least {least}, got {value}")
    if args.negatives < 1:
        raise ValueError(f"--negatives must be at least 1, got {args.negatives}")
    check_seed("--seed", args.seed)
    out = Path(args.out)
    runs.check_new_folder(out)
    pairs.train(out, args.epochs, args.per_epoch, args.negatives, args.seed, args.data_dir)
    print(f"saved to {out}/")
    return 0


def add_baselines(commands) -> None:
    """``digits baselines``."""
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


def add_ensemble(commands) -> None:
    """``digits ensemble``."""
    ensemble = commands.add_parser("ensemble", help="average the probabilities of trained models")
    ensemble.add_argument("--members", nargs="+", required=True, metavar="DIR", help="trained run folders")
    ensemble.add_argument("--out", required=True, help="new folder for the ensemble and its metrics")
    ensemble.add_argument("--tta", action="store_true", help="each member also averages over shifts")
    add_data_dir_argument(ensemble)
    ensemble.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args) -> int:
    """``digits ensemble``: average trained models and score the result."""
    from digits.ensemble import build_ensemble

    metrics = build_ensemble(args.members, args.out, data_dir=args.data_dir, tta=args.tta)
    validation = (
        f"validation accuracy {metrics.val_accuracy:.4%}"
        if metrics.val_images
        else "no validation score (a member was trained on all 60,000 images)"
    )
    print(
        f"{metrics.model}\n{validation}  test accuracy {metrics.test_accuracy:.4%}"
        f"  test R-squared {metrics.test_r2:.4f}\nsaved to {args.out}/"
    )
    return 0


_BENCHMARK_MODELS = ["keras-example", "fast-cnn", "seed-cnn"]


def add_benchmark(commands) -> None:
    """``digits benchmark``."""
    benchmark = commands.add_parser(
        "benchmark",
        help="train the Keras reference and our models side by side, (--real-world) measure how a"
        " trained model reads independent handwriting, or (--report) write docs/results.md",
    )
    kind = benchmark.add_mutually_exclusive_group()
    kind.add_argument(
        "--real-world",
        action="store_true",
        help="read other writers' digits, canvas drawings, photos, numbers and non-digits through the app",
    )
    kind.add_argument(
        "--report",
        action="store_true",
        help="score the shipped models on the MNIST test set and write docs/results.md and its plot (with"
        " the real-world table from docs/real-world), and the README's results table",
    )
    benchmark.add_argument(
        "--model", help="with --real-world: the model to measure (default: the served one)"
    )
    benchmark.add_argument(
        "--sets", nargs="+", metavar="SET", help="with --real-world: only these sets (default: all)"
    )
    benchmark.add_argument(
        "--scale", type=float, help="with --real-world: a fraction of each set (default: 1; quick looks)"
    )
    benchmark.add_argument(
        "--models",
        nargs="+",
        help="models to train, each with its default recipe (default: keras-example fast-cnn seed-cnn)",
    )
    benchmark.add_argument(
        "--out",
        help="new folder for runs, table and plot (default: runs/benchmark), the real-world report"
        " (default: runs/real-world) or --report's results.md (default: docs)",
    )
    benchmark.add_argument("--seed", type=int, help="random seed for every run or set (default: 0)")
    benchmark.add_argument("--epochs", type=int, help="override every model's epochs (quick looks only)")
    benchmark.add_argument("--train-size", type=int, help="train on a subset (quick looks only)")
    add_data_dir_argument(benchmark)
    benchmark.set_defaults(func=cmd_benchmark)


#: The flags of each kind of benchmark (besides --out and --data-dir), by argparse name and as typed.
_BENCHMARK_FLAGS = {
    "report": {},
    "real_world": {"model": "--model", "sets": "--sets", "scale": "--scale", "seed": "--seed"},
    "training": {"models": "--models", "seed": "--seed", "epochs": "--epochs", "train_size": "--train-size"},
}


def _check_benchmark_flags(args, kind: str) -> None:
    """Refuse a flag that another kind of benchmark takes: this one would silently ignore it."""
    given = {name: flag for flags in _BENCHMARK_FLAGS.values() for name, flag in flags.items()}
    stray = [flag for name, flag in given.items() if getattr(args, name) is not None]
    stray = [flag for flag in stray if flag not in _BENCHMARK_FLAGS[kind].values()]
    if not stray:
        return
    if kind == "report":
        raise ValueError("--report scores the shipped models; it takes only --out and --data-dir")
    if kind == "real_world":
        raise ValueError(f"{', '.join(stray)} go with the training benchmark, not --real-world")
    raise ValueError(f"{', '.join(stray)} go with --real-world")


def cmd_benchmark(args) -> int:
    """``digits benchmark``: models trained side by side, ``--real-world``, or ``--report``."""
    kind = "report" if args.report else "real_world" if args.real_world else "training"
    _check_benchmark_flags(args, kind)
    seed = 0 if args.seed is None else args.seed
    if kind == "report":
        from digits.report import write_report

        print(f"wrote {write_report(args.out or 'docs', args.data_dir)}")
        return 0
    if kind == "real_world":
        from digits.realworld_benchmark import run_real_world
        from digits.realworld_report import headline

        scale = 1.0 if args.scale is None else args.scale
        rows = run_real_world(
            args.model, args.out or "runs/real-world", args.data_dir, seed, args.sets, scale
        )
        print(headline(rows))
        return 0
    from digits.benchmark import run_benchmark

    run_benchmark(
        args.models or _BENCHMARK_MODELS,
        args.out or "runs/benchmark",
        args.data_dir,
        seed,
        epochs=args.epochs,
        train_size=args.train_size,
    )
    return 0
