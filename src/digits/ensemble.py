"""Ensembles: average the probabilities of trained models, and evaluate the result like one model."""

from __future__ import annotations

import os
from pathlib import Path

from digits import data as mnist
from digits import evaluation, plots, write_json
from digits.models import EnsembleClassifier, ShiftTTA, load_classifier


def build_ensemble(members: list[str], out: str | Path, data_dir=None, tta: bool = False) -> dict:
    """Write an ensemble folder (``ensemble.json``, ``metrics.json``, plots) and return its metrics.

    The folder then works wherever a model does: ``digits evaluate OUT``, ``digits predict OUT ...``.
    Choose members by the reported validation accuracy: it is clean when they were all trained with the
    same ``--seed`` (which fixes the split).
    """
    out = Path(out)
    if (out / "ensemble.json").exists():
        raise FileExistsError(f"{out}: already holds an ensemble; choose another --out")
    loaded = [load_classifier(member) for member in members]
    classifier = EnsembleClassifier([ShiftTTA(m) if tta else m for m in loaded])
    prepared = mnist.prepare(data_dir)
    result = evaluation.evaluate(classifier, prepared)
    probabilities = result.pop("test_probabilities")

    out.mkdir(parents=True, exist_ok=True)
    # Member paths are stored relative to the ensemble folder, so runs/ can be moved as a whole.
    listed = [os.path.relpath(m.path, out) for m in loaded]
    write_json(out / "config.json", {"model": "ensemble", "members": listed, "tta": tta})
    write_json(out / "metrics.json", result)
    plots.test_figures(result, prepared.x_test, prepared.y_test, probabilities, out)
    # Last: ensemble.json marks a complete folder, so an interrupted build can simply be run again.
    write_json(out / "ensemble.json", {"members": listed, "tta": tta})
    return result
