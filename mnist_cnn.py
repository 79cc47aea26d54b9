"""Train the seed CNN on MNIST and report train accuracy, test accuracy and R-squared.

The seed project's main application, as a lesson that reads top to bottom:

1. import the libraries and define the CNN;
2. load and preprocess MNIST (checksums verified, scaled to [0, 1], a validation split carved out);
3. compile and train it, with random distortions of the training digits (augmentation);
4. evaluate it on the 10,000 test images;
5. show and save the results: accuracy, R-squared, learning curves, confusion matrix, mistakes.

    python mnist_cnn.py [--epochs N] [--data-dir DIR] [--out DIR]

Everything lands in one run folder (``runs/mnist_cnn-TIMESTAMP`` unless ``--out`` says otherwise),
which ``digits evaluate`` and ``digits predict`` take. Training saves a backup after every epoch:
interrupted, the same command with ``--out`` continues from the last one. ``digits train --model
seed-cnn`` trains the same network through the package's general training loop.
"""

# ---------------------------------------------------------------------------- 1. libraries and the CNN
import argparse
import dataclasses
import os
import sys
from datetime import datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter

from digits import DigitsError, import_tensorflow_quietly, plots, runs  # noqa: E402
from digits import data as mnist  # noqa: E402
from digits.cli.flags import add_data_dir_argument  # noqa: E402
from digits.evaluation import evaluate  # noqa: E402
from digits.inference import KerasClassifier  # noqa: E402

import_tensorflow_quietly()
import keras  # noqa: E402
from keras import layers  # noqa: E402

from digits.training import make_dataset  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=15, help="passes over the training images (default: 15)")
parser.add_argument("--out", help="run folder; an unfinished one is continued (default: runs/mnist_cnn-TIME)")
add_data_dir_argument(parser)
args = parser.parse_args()
if not 1 <= args.epochs <= 1000:
    parser.error(f"--epochs must be between 1 and 1000, got {args.epochs}")
out = Path(args.out or f"runs/mnist_cnn-{datetime.now():%Y%m%d-%H%M%S}")
backup = out / "backup"
if not backup.is_dir():
    try:
        runs.check_new_folder(out)  # finished work is never overwritten
    except FileExistsError as exc:
        parser.error(str(exc))

SEED, BATCH_SIZE, LEARNING_RATE = 0, 64, 3e-3


def seed_cnn() -> keras.Sequential:
    """Two convolution + max-pooling stages find strokes and their combinations; two dense layers,
    with dropout against over-fitting, turn them into ten digit probabilities."""
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.25),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ],
        name="seed_cnn",
    )


# ---------------------------------------------------------------------------- 2. load and preprocess MNIST
try:
    data = mnist.prepare(args.data_dir, val_size=5000, seed=SEED)
except DigitsError as exc:
    sys.exit(f"mnist_cnn.py: error: {exc}")
print(f"data: {len(data.x_train)} train / {len(data.x_val)} validation / {len(data.x_test)} test images")

# ---------------------------------------------------------------------------- 3. compile and train
keras.utils.set_random_seed(SEED)
# Batches of shuffled training images, each distorted anew every epoch by the "affine" augmentation
# (digits.augmentation: small random rotations, shifts and zooms, Keras preprocessing layers).
train_images = make_dataset(data.x_train, data.y_train, BATCH_SIZE, shuffle=True, augment="affine", seed=SEED)
validation_images = make_dataset(data.x_val, data.y_val, 1024)

model = seed_cnn()
steps = args.epochs * len(train_images)
model.compile(
    # The learning rate falls along a cosine from 3e-3 to 1% of it over the run.
    optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps, alpha=0.01)),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
model.summary()
out.mkdir(parents=True, exist_ok=True)
try:
    model.fit(
        train_images,
        validation_data=validation_images,
        epochs=args.epochs,
        shuffle=False,  # the dataset shuffles itself
        verbose=1 if sys.stdout.isatty() else 2,
        callbacks=[
            keras.callbacks.BackupAndRestore(backup),  # resume after an interruption
            keras.callbacks.CSVLogger(out / runs.HISTORY_FILE, append=True),
        ],
    )
except KeyboardInterrupt:
    sys.exit(f"\ninterrupted; continue from the last finished epoch with: python mnist_cnn.py --out {out}")
model.save(out / "model.keras")

# ---------------------------------------------------------------------------- 4. evaluate on the test set
# Accuracy, log loss and R-squared on the training, validation and test images, and the per-class
# report of the test set (digits.evaluation, on the saved model as digits predict loads it).
metrics, test_probabilities = evaluate(KerasClassifier(out / "model.keras"), data)
metrics = dataclasses.replace(metrics, model="seed-cnn", epochs=args.epochs)

# ---------------------------------------------------------------------------- 5. results and plots
history = [{**row, "epoch": row["epoch"] + 1} for row in runs.read_history(out)]
settings = {"script": "mnist_cnn.py", "epochs": args.epochs, "batch_size": BATCH_SIZE, "augment": "affine"}
runs.write_config(
    out,
    runs.RunConfig(
        "seed-cnn", "keras", 5000, SEED, settings=settings, versions=runs.versions(), data_sha256=mnist.SHA256
    ),
)
runs.write_metrics(out, metrics)
plots.learning_curves(history, out / "learning_curves.png")
plots.test_figures(metrics, data.x_test, data.y_test, test_probabilities, out)

print(f"\ntrain accuracy  {metrics.train_accuracy:.4%}")
print(f"test accuracy   {metrics.test_accuracy:.4%}")
print(f"test R-squared  {metrics.test_r2:.4f}")
print(f"saved to {out}/ (model.keras, metrics.json, history.csv, learning_curves.png, confusion_matrix.png)")
