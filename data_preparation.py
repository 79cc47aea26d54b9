"""Load, verify and prepare MNIST, and print what came out: ``python data_preparation.py``.

The seed project's data step, kept as a script over ``digits.data``: checksums of the four files,
the shapes of the prepared arrays (scaled to [0, 1], shaped (N, 28, 28, 1)), and the class balance
of the training, validation (carved from the 60,000 training images) and test sets.
"""

import argparse
import sys

import numpy as np

from digits import DigitsError, data

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-dir", help="folder with the four MNIST .gz files (default: $DIGITS_DATA_DIR)")
parser.add_argument("--val-size", type=int, default=5000, help="validation images carved from training")
parser.add_argument("--seed", type=int, default=0, help="seed of the stratified validation split")
args = parser.parse_args()

try:
    # 1. Checksums
    print("checksums")
    for row in data.check_files(args.data_dir):
        print(f"  {row['status']:<6} {row['file']:<28} {row.get('error', row.get('path', ''))}")
    # 2. Prepared arrays
    prepared = data.prepare(args.data_dir, val_size=args.val_size, seed=args.seed)
except (DigitsError, ValueError) as exc:
    sys.exit(f"data_preparation.py: error: {exc}")

print("\nprepared arrays")
for split in ("train", "val", "test"):
    x, y = getattr(prepared, f"x_{split}"), getattr(prepared, f"y_{split}")
    value_range = f"[{x.min():.1f}, {x.max():.1f}]" if len(x) else "(empty)"
    print(f"  x_{split:<5} {str(x.shape):<18} {x.dtype}  range {value_range}   y_{split} {y.shape}")

# 3. Class balance
print("\nclass balance (images per digit)")
print("  digit " + "".join(f"{d:>7}" for d in range(10)))
for split in ("train", "val", "test"):
    counts = np.bincount(getattr(prepared, f"y_{split}"), minlength=10)
    print(f"  {split:<5} " + "".join(f"{c:>7}" for c in counts))
print("\nready: the validation split is stratified, so each digit keeps its share in every set")
