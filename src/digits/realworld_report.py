"""The real-world benchmark's report: ``report.md`` with its headline table, the confusions of each
set and contact sheets of the errors (the input beside what the model saw)."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

from PIL import Image, ImageDraw

from digits.realworld import NONE, Answer
from digits.report import commit
from digits.runs import machine

_SHEET_ERRORS = 48  # tiles on a contact sheet
#: Confidence bins of the expected calibration error.
ECE_BINS = 15


def _thumbnail(data: bytes, size: tuple[int, int]) -> Image.Image:
    image = Image.open(io.BytesIO(data)).convert("L")
    image.thumbnail(size)
    tile = Image.new("L", size, 255)
    tile.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    return tile


def contact_sheet(answers: list[Answer], path: Path, number: bool = False) -> int:
    """A PNG of the errors: each input beside the 28x28 images the model saw, with truth and answer."""
    errors = [a for a in answers if not a.right][:_SHEET_ERRORS]
    if not errors:
        return 0
    seen_width = 84 * (6 if number else 1)
    tile_w, tile_h, columns = 96 + 4 + seen_width + 8, 84 + 18, 2 if number else 4
    rows = -(-len(errors) // columns)
    sheet = Image.new("L", (columns * tile_w, rows * tile_h), 255)
    pen = ImageDraw.Draw(sheet)
    for i, a in enumerate(errors):
        x, y = (i % columns) * tile_w, (i // columns) * tile_h
        sheet.paste(_thumbnail(a.data, (96, 84)), (x, y))
        for k, seen in enumerate(a.processed[: seen_width // 84]):
            sheet.paste(
                Image.fromarray(seen).resize((84, 84), Image.Resampling.NEAREST), (x + 100 + 84 * k, y)
            )
        confidence = "" if a.confidence is None else f" {a.confidence:.0%}"
        pen.text(
            (x + 2, y + 86),
            f"{a.label or 'none'} read {a.read if a.read != NONE else 'none'}{confidence}",
            fill=0,
        )
    sheet.save(path)
    return len(errors)


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def markdown(rows: list[dict], model: str, seed: int, scale: float) -> str:
    """The report: a headline table, then each set's confusions and contact sheet."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = f"digits benchmark --real-world --seed {seed}" + (f" --scale {scale:g}" if scale != 1 else "")
    lines = [
        "# How well the reader reads real handwriting",
        "",
        f"Written by `{command}` on {now}, at commit {commit()}, on "
        f"{machine()}; model `{model}`. Every image went through the web app's own endpoints "
        "(the drawn set through the page in Chromium). These sets only measure: no model was trained "
        "or tuned on them.",
        "",
        '| set | images | read right | answered "not a digit" | ECE | ms per image |',
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ece = pct(row["ece"]) if "ece" in row else "–"
        lines.append(
            f"| {row['set']} | {row['images']:,} | {pct(row['accuracy'])} | {pct(row['not_a_digit'])} "
            f"| {ece} | {row['ms_per_image']:.1f} |"
        )
    lines += [
        "",
        '*read right*: the digit or whole number named correctly; for not-digits, answered "not a digit" '
        '(or no digit found), and for not-digits-as-numbers, "not a number". *ECE*: expected calibration '
        "error of the stated confidence over "
        f"{ECE_BINS} bins. *ms per image*: the app's time per request, seen from the client; for the "
        "drawn set, the drawing in the browser too.",
        "",
    ]
    for row in rows:
        lines += [f"## {row['set']}", ""]
        if "confusions" in row:
            common = ", ".join(f"{pair} ({n})" for pair, n in row["confusions"]) or "none"
            lines.append(f"Most common errors (true→read, {NONE} = not a digit): {common}.")
        if "by_kind" in row:
            kinds = ", ".join(f"{kind} {pct(rate)}" for kind, rate in row["by_kind"].items())
            lines.append(f'Answered "not a digit", by kind: {kinds}.')
        if row.get("sheet"):
            lines += ["", f"![errors of {row['set']}]({row['sheet']})"]
        lines.append("")
    return "\n".join(lines)


def headline(rows: list[dict]) -> str:
    """The table printed at the end of a run."""
    return "\n".join(
        f"{row['set']:<14} {row['images']:>6,} images  read right {pct(row['accuracy']):>7}"
        f"  not a digit {pct(row['not_a_digit']):>7}" + (f"  ECE {pct(row['ece'])}" if "ece" in row else "")
        for row in rows
    )
