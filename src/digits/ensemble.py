"""Ensembles: average the probabilities of trained models, and evaluate the result like one model."""

from __future__ import annotations

import os
from pathlib import Path

from digits import data as mnist
from digits import evaluation, log_stderr, plots, runs, write_json
from digits.inference import EnsembleClassifier, ShiftTTA, load_classifier


def build_ensemble(
    members: list[str], out: str | Path, data_dir=None, tta: bool = False, log=log_stderr
) -> runs.RunMetrics:
    """Write an ensemble folder (ensemble.json, config.json, metrics.json, plots); return its metrics.

    The folder then works wherever a model does: ``digits evaluate OUT``, ``digits predict OUT ...``.
    Choose members by the reported validation accuracy: it is clean when they were all trained on the
    same ``--split-seed`` (0 unless changed), so none of them saw the validation images. Members
    trained on all 60,000 images (``--val-size 0``, once a recipe is chosen) may join; the ensemble
    then has no validation score, since they saw every validation image.
    """
    out = Path(out)
    # Like `digits train`: never overwrite a run (a member, say), and fail before minutes of scoring.
    runs.check_new_folder(out)
    loaded = [load_classifier(member) for member in members]
    recorded = {runs.recorded_split(m.path.parent) for m in loaded}
    splits = {split for split in recorded if split[0] > 0}
    if len(splits) > 1:
        raise ValueError(
            "members were trained beside different validation splits (val_size, split_seed): "
            f"{', '.join(map(str, sorted(splits)))}; each one's validation images are another's training"
            " images, so the ensemble could not be scored or chosen on validation"
        )
    trained_on_all = any(size == 0 for size, _ in recorded)
    val_size, split_seed = (0, 0) if trained_on_all else splits.pop()
    classifier = EnsembleClassifier([ShiftTTA(m) if tta else m for m in loaded], progress=log)
    prepared = mnist.prepare(data_dir, val_size, split_seed)
    metrics, probabilities = evaluation.evaluate(classifier, prepared, log)

    out.mkdir(parents=True, exist_ok=True)
    # Member paths are stored relative to the ensemble folder, so runs/ can be moved as a whole.
    listed = [os.path.relpath(m.path, out) for m in loaded]
    settings = {"members": listed, "tta": tta}
    runs.write_config(out, runs.RunConfig("ensemble", "ensemble", val_size, split_seed, settings=settings))
    runs.write_metrics(out, metrics)
    plots.test_figures(metrics, prepared.x_test, prepared.y_test, probabilities, out)
    # Last: ensemble.json marks a complete folder, so load_classifier never picks up a partial one.
    write_json(out / "ensemble.json", settings)
    return metrics
