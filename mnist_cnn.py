"""Train the seed CNN on MNIST and report train accuracy, test accuracy and R-squared.

The seed project's main application, kept as a script: ``python mnist_cnn.py [--epochs N]``.
Everything (model, metrics, history, plots, TensorBoard logs) is saved under ``runs/``.
The steps are those of ``digits.training.train``: load and verify the data, prepare it, build the
5-layer CNN, train it with on-the-fly augmentation, evaluate on the held-out test set.
"""

import argparse
import sys
from datetime import datetime
from pathlib import Path

from digits.cli import add_data_dir_argument, main

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, help="number of epochs (default: 15, about 4 minutes on 2 cores)")
add_data_dir_argument(parser)
parser.add_argument("--out", help="run folder (default: runs/mnist_cnn-TIMESTAMP)")
parser.add_argument("--no-augment", action="store_true", help="train without data augmentation")
args = parser.parse_args()

out = args.out or str(Path("runs") / f"mnist_cnn-{datetime.now():%Y%m%d-%H%M%S}")
argv = ["train", "--model", "seed-cnn", "--out", out]
if args.epochs is not None:
    argv += ["--epochs", str(args.epochs)]
if args.data_dir:
    argv += ["--data-dir", args.data_dir]
if args.no_augment:
    argv.append("--no-augment")
sys.exit(main(argv))
