"""Flags shared by several commands and by the seed's scripts."""

from __future__ import annotations

import argparse


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--data-dir`` flag, worded once for every command and script that reads MNIST."""
    parser.add_argument(
        "--data-dir",
        help="folder with the four MNIST .gz files (default: $DIGITS_DATA_DIR, else download to the cache)",
    )
