"""Load, verify and prepare MNIST, and print what came out (python data_preparation.py).

The seed project's data step, kept as a script over ``digits.data``: the SHA-256 of each of the four
files (checked against the published one), the shapes of the prepared arrays (scaled to [0, 1], shaped
(N, 28, 28, 1)), and the class balance of the training, validation (carved from the 60,000 training
images) and test sets.
"""

import argparse
import signal
import sys
from typing import NoReturn

import numpy as np

from digits import DigitsError, data
from digits.cli.flags import add_data_dir_argument

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
add_data_dir_argument(parser)
parser.add_argument(
    "--val-size", type=int, default=5000, help="validation images carved from training (0: none)"
)
parser.add_argument("--seed", type=int, default=0, help="seed of the stratified validation split")
args = parser.parse_args()

# A reader that stops early (| head) ends the script quietly, as it would any command-line tool.
if hasattr(signal, "SIGPIPE"):  # not on Windows
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def fail(message: str) -> NoReturn:
    """Exit with one error line, the way argparse words its own."""
    sys.exit(f"data_preparation.py: error: {message}")


# 1. Flags, checked before any data is touched
try:
    data.check_split(args.val_size, args.seed, names={"val_size": "--val-size", "seed": "--seed"})
except ValueError as exc:
    fail(str(exc))

# 2. The four files, each checked against its published SHA-256
try:
    rows = data.check_files(args.data_dir)
except DigitsError as exc:
    fail(str(exc))
folder, is_cache = data.resolve_data_dir(args.data_dir)
print(f"sha256 of the four files in {folder}{' (download cache)' if is_cache else ''}")
print("\n".join(data.check_report(rows)))
failed = sum(row["status"] != "ok" for row in rows)
if failed:
    fail(f"{failed} of the four files failed verification; see above")

# 3. The transforms, one at a time: raw bytes -> scaled floats with a channel axis -> split
try:
    (x_raw, y_raw), (x_test_raw, _) = data.load_mnist(args.data_dir)
    prepared = data.prepare(args.data_dir, val_size=args.val_size, seed=args.seed)
except DigitsError as exc:  # a file changed since it was checked
    fail(str(exc))
print("\nraw images, as stored: one byte per pixel, 0 (paper) to 255 (ink)")
print(
    f"  training {x_raw.shape} {x_raw.dtype} range [{x_raw.min()}, {x_raw.max()}]   test {x_test_raw.shape}"
)
scaled = data.scale(x_raw[:1])
print(
    f"scaled (data.scale): pixel / 255 as float32, with a channel axis for the CNN: {scaled.shape[1:]}"
    f" {scaled.dtype} range [{scaled.min():.1f}, {scaled.max():.1f}]"
)
if args.val_size:
    print(
        f"split (data.prepare): {args.val_size:,} of the 60,000 held out for validation, stratified by digit"
    )
print("\nprepared arrays")
for split in ("train", "val", "test"):
    x, y = getattr(prepared, f"x_{split}"), getattr(prepared, f"y_{split}")
    value_range = f"[{x.min():.1f}, {x.max():.1f}]" if len(x) else "(empty)"
    print(f"  x_{split:<5} {str(x.shape):<18} {x.dtype}  range {value_range}   y_{split} {y.shape}")

# 4. Class balance
print("\nclass balance (images per digit)")
print("  digit " + "".join(f"{d:>7}" for d in range(10)))
for split in ("train", "val", "test"):
    counts = np.bincount(getattr(prepared, f"y_{split}"), minlength=10)
    print(f"  {split:<5} " + "".join(f"{c:>7}" for c in counts))
if args.val_size:
    print("\nready: the validation split is stratified, so each digit keeps its share in every set")
else:
    print(f"\nready: no validation split (--val-size 0); training uses all {len(prepared.y_train):,} images")
