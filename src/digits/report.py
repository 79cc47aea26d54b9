"""The results report: the shipped models scored on MNIST's test set, written to ``docs/results.md``.

``digits benchmark --report`` writes it with the date, commit and machine, a plot, and the table of
the last real-world benchmark (``docs/real-world/results.json``, written by ``digits benchmark
--real-world --out docs/real-world``); it also rewrites the README's results table between its
``<!-- results -->`` markers, so no figure there is typed by hand.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from digits import data as mnist
from digits import log_stderr, plots, runs
from digits.evaluation import summary
from digits.inference import DEFAULT_MODEL, load_uncalibrated

README = Path("README.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"


def commit(checkout: Path | None = None) -> str:
    """The checked-out commit, marked when the code under ``src/`` differs from it (the figures
    then come from code no commit holds), or "unknown" outside a git checkout."""
    cwd = checkout or Path(__file__).parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd)

    try:
        found = git("rev-parse", "--short", "HEAD")
        changed = git("diff", "--quiet", "HEAD", "--", ":/src")  # :/ is the checkout's top
    except OSError:
        return "unknown"
    sha = found.stdout.strip()
    if not sha:
        return "unknown"
    return f"{sha} with uncommitted changes to src/" if changed.returncode == 1 else sha


def shipped_models(models_dir: Path = Path("models")) -> list[tuple[str, Path]]:
    """The model ``serve`` and ``predict`` use, then each kept in ``models/``: (role, folder)."""
    found = [("served by default", DEFAULT_MODEL.parent)]
    found += [("kept in models/", folder) for folder in sorted(models_dir.glob("*/")) if folder.is_dir()]
    return found


def images_per_second(classifier, x: np.ndarray) -> float:
    """Best-of-three batch prediction throughput over ``x``, after a warm-up call."""
    classifier.predict_proba(x[:1024])
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        classifier.predict_proba(x)
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def score_models(data_dir=None, log=log_stderr) -> list[dict]:
    """Each shipped model's test accuracy, R-squared and speed, with what its run recorded."""
    (_, _), (x_test, y_test) = mnist.load_mnist(data_dir)
    x_test = mnist.scale(x_test)
    rows = []
    for role, folder in shipped_models():
        log(f"scoring {folder}")
        classifier = load_uncalibrated(folder)
        test = summary(y_test, classifier.predict_proba(x_test))
        recorded = runs.read_metrics(folder)
        rows.append(
            {
                "model": classifier.name,
                "folder": os.path.relpath(folder),
                "role": role,
                "test_accuracy": test["accuracy"],
                "test_r2": test["r2"],
                "val_accuracy": recorded.val_accuracy if recorded else None,
                "train_seconds": recorded.train_seconds if recorded else None,
                "images_per_second": images_per_second(classifier, x_test),
                "megabytes": classifier.path.stat().st_size / 1e6,
            }
        )
    return rows


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def mnist_table(rows: list[dict]) -> list[str]:
    """The shipped models as Markdown table rows."""
    lines = [
        "| model | folder | test accuracy | test R² | validation accuracy | predict images/s | size MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} ({r['role']}) | `{r['folder']}` | {_pct(r['test_accuracy'])}"
            f" | {r['test_r2']:.4f} | {_pct(r['val_accuracy'])} | {r['images_per_second']:,.0f}"
            f" | {r['megabytes']:.2f} |"
        )
    return lines


def real_world_table(results: dict) -> list[str]:
    """The real-world benchmark's sets as Markdown table rows."""
    lines = [
        '| set | images | read right | answered "not a digit" | ECE |',
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in results["sets"]:
        lines.append(
            f"| {row['set']} | {row['images']:,} | {_pct(row['accuracy'])} | {_pct(row['not_a_digit'])}"
            f" | {_pct(row.get('ece'))} |"
        )
    return lines


def write_report(out: str | Path = "docs", data_dir=None, log=log_stderr) -> Path:
    """Write ``out/results.md`` and ``out/results.png``; refresh the README's table; return the page."""
    out = Path(out)
    rows = score_models(data_dir, log)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    real_world_file = out / "real-world" / "results.json"
    real_world = json.loads(real_world_file.read_text()) if real_world_file.is_file() else None
    lines = [
        "# Results",
        "",
        f"Written by `digits benchmark --report` on {now}, at commit {commit()}, on {runs.machine()}.",
        "Re-run it when a shipped model, or the code that scores one, changes.",
        "",
        "## MNIST test set (10,000 images)",
        "",
        "Each shipped model scored now; validation accuracy is what its run recorded on the 5,000",
        "validation images it chose by. Throughput: batches of the whole test set, best of three.",
        "",
        *mnist_table(rows),
        "",
        "![test accuracy and training time of the shipped models](results.png)",
        "",
    ]
    if real_world:
        lines += [
            f"## Real handwriting (model `{real_world['model']}`)",
            "",
            "From `digits benchmark --real-world --out docs/real-world`; its own date, commit, confusions",
            "and contact sheets are in [real-world/report.md](real-world/report.md).",
            "",
            *real_world_table(real_world),
            "",
        ]
    page = out / "results.md"
    page.write_text("\n".join(lines))
    plotted = [{**r, "label": r["model"], "kind": r["role"]} for r in rows if r["train_seconds"]]
    plots.model_comparison(plotted, out / "results.png", title="Shipped models, MNIST test set")
    if README.is_file() and START in README.read_text():
        update_readme(README, rows, real_world)
    return page


def update_readme(readme: Path, rows: list[dict], real_world: dict | None) -> None:
    """Replace the table between the README's results markers with the report's headline rows."""
    text = readme.read_text()
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    lines = ["| model | MNIST test accuracy | test R² | predict images/s |", "| --- | ---: | ---: | ---: |"]
    lines += [
        f"| {r['model']} ({r['role']}) | {_pct(r['test_accuracy'])} | {r['test_r2']:.4f}"
        f" | {r['images_per_second']:,.0f} |"
        for r in rows
    ]
    if real_world:
        lines += ["", f"Real handwriting, model `{real_world['model']}`:", "", *real_world_table(real_world)]
    readme.write_text(before + START + "\n" + "\n".join(lines) + "\n" + END + after)
