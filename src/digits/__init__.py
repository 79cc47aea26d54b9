"""Handwritten digit recognition on MNIST: data, models, training, evaluation, baselines and a web app."""

__version__ = "0.1.0"


class DigitsError(Exception):
    """An expected failure with a message meant for the user (bad data, bad input, bad flags)."""
