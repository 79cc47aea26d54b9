"""The real-world benchmark: independent handwriting read through exactly the path users take.

Every image goes through the web app's own endpoints (decode, normalise, model, "not a digit"):
``/api/predict`` for single digits, ``/api/predict-number`` for numbers, and for the drawn set the
page itself, in Debian's Chromium driven by Playwright, which posts its canvas as a user's drawing.
Per set it reports accuracy, how many were answered "not a digit", the top confusions, the expected
calibration error, and a contact sheet of the errors (the input beside what the model saw).

    digits benchmark --real-world [--model MODEL] [--out docs/real-world]
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from digits import DigitsError, log_stderr, write_json
from digits import realworld as sets
from digits.realworld import NONE, Answer
from digits.realworld_report import ECE_BINS, contact_sheet, markdown, pct
from digits.strokes import Drawing, drawn_digits

#: The sets, in the report's order, and how many images each has by default. A set added later goes
#: last: each set's images come from its own place in this order (``run_real_world``), so they stay
#: the same whichever sets are added.
SETS = {
    "other-writers": None,
    "drawn": 300,
    "photographed": 2000,
    "numbers": 2000,
    "not-digits": 1000,
    "lined-paper": 1000,
    "on-a-desk": 1000,
    "from-afar": 1000,
    "numbers-from-afar": 1000,
    "not-digits-as-numbers": 1000,
}
#: The sets read as written numbers, by ``/api/predict-number``.
NUMBERS = ("numbers", "numbers-from-afar", "not-digits-as-numbers")
#: The sets of images that hold no digit: read right when answered "not a digit" ("not a number").
NOT_DIGITS = ("not-digits", "not-digits-as-numbers")
#: The sets of one MNIST test digit per photo, and what takes each photo.
ONE_DIGIT_PHOTOS = {"on-a-desk": sets.on_a_desk, "from-afar": sets.from_afar}
CHROMIUM = os.environ.get("DIGITS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# ---------------------------------------------------------------------------- reading


def _answer(sample: sets.Sample, response, number: bool) -> Answer:
    body = response.json()
    if response.status_code == 422 and body.get("error") == "no_digit":
        return Answer(sample.label, sample.kind, NONE, None, data=sample.data)
    if response.status_code != 200:
        raise DigitsError(f"the app answered {response.status_code} {body} for a {sample.kind} image")
    if number:
        pieces = body["digits"]
        read = body["number"] if not body.get("not_a_number") else NONE
        processed = [np.asarray(d["processed"], dtype=np.uint8) for d in pieces]
        return Answer(sample.label, sample.kind, read or NONE, body["confidence"], processed, sample.data)
    read = NONE if body.get("not_a_digit") else str(body["digit"])
    processed = [np.asarray(body["processed"], dtype=np.uint8)]
    return Answer(sample.label, sample.kind, read, body["confidence"], processed, sample.data)


def read_uploads(client, samples: list[sets.Sample], number: bool = False, log=log_stderr) -> list[Answer]:
    """Post each image to the app as the page's upload does, and collect the answers."""
    path = "/api/predict-number" if number else "/api/predict"
    answers = []
    for n, sample in enumerate(samples, 1):
        response = client.post(path, files={"file": ("image.jpg", sample.data, "image/jpeg")})
        answers.append(_answer(sample, response, number))
        if n % 500 == 0:
            log(f"  {n}/{len(samples)}")
    return answers


# The page's own fetch, wrapped so that the benchmark can read each answer the page received.
_RECORD_ANSWERS = """
window.answers = [];
window.pending = 0;
const realFetch = window.fetch;
window.fetch = async (...args) => {
  window.pending++;
  const response = await realFetch(...args);
  const json = response.json.bind(response);
  response.json = async () => {
    try { const body = await json(); window.answers.push({status: response.status, body}); return body; }
    finally { setTimeout(() => window.pending--, 0); }
  };
  return response;
};
"""


# The page shows the answer to its latest drawing and has read every answer it asked for.
_ANSWERED = "document.body.dataset.state === 'done' && window.pending === 0"


class _Recorded:
    """The last answer the page received, shaped like an HTTP response for ``_answer``."""

    def __init__(self, recorded: dict):
        self.status_code, self._body = recorded["status"], recorded["body"]

    def json(self):
        return self._body


def check_browser() -> None:
    """Raise a ``DigitsError`` saying what to install unless Chromium and Playwright are there."""
    if not Path(CHROMIUM).is_file():
        raise DigitsError(
            f"the drawn set needs Chromium, not found at {CHROMIUM} (apt-get install chromium, or set"
            " $DIGITS_CHROMIUM); leave it out with --sets"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise DigitsError("the drawn set needs Playwright: pip install -e '.[dev]'") from None


def read_drawings(app, drawings: list[Drawing], log=log_stderr, browser=None) -> list[Answer]:
    """Draw each digit with the mouse on the page's canvas in Chromium and read the page's answer.

    The app is served on a free loopback port for the run; ``browser``, a Playwright browser already
    running, is used instead of launching Chromium.
    """
    import uvicorn

    check_browser()
    from playwright.sync_api import sync_playwright

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise DigitsError("the benchmark's server did not start")
        time.sleep(0.05)
    try:
        if browser is not None:
            return _draw(browser, f"http://127.0.0.1:{port}/", drawings, log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                return _draw(browser, f"http://127.0.0.1:{port}/", drawings, log)
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _draw(browser, url: str, drawings: list[Drawing], log) -> list[Answer]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.add_init_script(_RECORD_ANSWERS)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-state=idle]")
    box = page.locator("#pad").bounding_box()
    answers = []
    for n, drawing in enumerate(drawings, 1):
        page.fill("#stroke", str(drawing.width))
        for stroke in drawing.strokes:
            points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
            page.mouse.move(*points[0])
            page.mouse.down()
            for point in points[1:]:
                page.mouse.move(*point)
            page.mouse.up()
        page.wait_for_function(
            "document.body.dataset.state === 'done' && window.pending === 0", timeout=15_000
        )
        recorded = page.evaluate("window.answers[window.answers.length - 1]")
        canvas = page.evaluate("document.getElementById('pad').toDataURL('image/png')")
        sample = sets.Sample(base64.b64decode(canvas.partition(",")[2]), str(drawing.label), "canvas")
        answers.append(_answer(sample, _Recorded(recorded), number=False))
        page.click("#clear")
        if n % 100 == 0:
            log(f"  {n}/{len(drawings)}")
    context.close()
    return answers


# ---------------------------------------------------------------------------- scoring


def expected_calibration_error(confidence: np.ndarray, right: np.ndarray, bins: int = ECE_BINS) -> float:
    """The gap between confidence and accuracy, averaged over equal-width confidence bins by their size."""
    if not len(confidence):
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(confidence[inside].mean() - right[inside].mean())
    return float(error)


def score(name: str, answers: list[Answer], seconds: float) -> dict:
    """A set's figures: accuracy, "not a digit" rate, calibration, confusions, time per image."""
    right = np.array([a.right for a in answers])
    rejected = np.array([a.read == NONE for a in answers])
    row = {
        "set": name,
        "images": len(answers),
        "accuracy": float(right.mean()),
        "not_a_digit": float(rejected.mean()),
        "ms_per_image": 1e3 * seconds / max(len(answers), 1),
    }
    if name not in NOT_DIGITS:
        scored = [a for a in answers if a.confidence is not None]
        confidence = np.array([a.confidence for a in scored])
        # Calibration of the stated confidence: is the digit (or number) read right that often?
        row["ece"] = expected_calibration_error(confidence, np.array([a.read == a.label for a in scored]))
        wrong = Counter(f"{a.label}→{a.read}" for a in answers if not a.right)
        row["confusions"] = wrong.most_common(5)
    else:
        kinds = sorted({a.kind for a in answers})
        row["by_kind"] = {k: float(np.mean([a.read == NONE for a in answers if a.kind == k])) for k in kinds}
    return row


# ---------------------------------------------------------------------------- the run


def _set_sizes(scale: float) -> dict[str, int | None]:
    """Each set's size: its default times ``scale``, at least 10. None is the whole of other-writers'
    source, optdigits' 1,797 test digits, which a scale below 1 cuts down like the others."""
    sizes = {}
    for name, size in SETS.items():
        if size is None and scale == 1:
            sizes[name] = None
        else:
            sizes[name] = max(10, int((size or 1797) * scale))
    return sizes


def _build(name: str, rng: np.random.Generator, count: int | None, x_test, y_test) -> list:
    """The images of one set: samples to upload, or drawings for the page."""
    if name == "other-writers":
        return sets.other_writers(rng, count)
    if name == "drawn":
        return drawn_digits(rng, count)
    if name == "photographed":
        return sets.photographed(x_test, y_test, rng, count)
    if name == "numbers":
        return sets.numbers(x_test, y_test, rng, count)
    if name == "numbers-from-afar":
        return sets.numbers_from_afar(x_test, y_test, rng, count)
    if name == "lined-paper":
        return sets.lined_paper(x_test, y_test, rng, count)
    if name in ONE_DIGIT_PHOTOS:
        return sets.photos(ONE_DIGIT_PHOTOS[name], name, x_test, y_test, rng, count)
    return sets.not_digits(rng, count)


def run_real_world(
    model=None,
    out: str | Path = "runs/real-world",
    data_dir=None,
    seed: int = 0,
    only: list[str] | None = None,
    scale: float = 1.0,
    log=log_stderr,
) -> list[dict]:
    """Build the sets, read each through the app, and write ``report.md``, ``results.json`` and sheets.

    ``only`` limits the run to some sets; ``scale`` multiplies each set's size (quick looks only).
    """
    from fastapi.testclient import TestClient

    from digits import data as mnist
    from digits.server import create_app

    chosen = only or list(SETS)
    for name in chosen:
        if name not in SETS:
            raise ValueError(f"unknown set {name!r}; choose from: {', '.join(SETS)}")
    if not 0 < scale <= 1:
        raise ValueError(f"the scale must be in (0, 1], got {scale}")
    if "drawn" in chosen:
        check_browser()  # before any work, so a missing browser loses none
    counts = _set_sizes(scale)
    (_, _), (x_test, y_test) = mnist.load_mnist(data_dir)
    app = create_app(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # once data and model are known good: no empty folder
    rows = []
    with TestClient(app) as client:
        for name in chosen:
            rng = np.random.default_rng([seed, list(SETS).index(name)])  # each set its own stream
            log(f"{name}: building the images")
            items = _build(name, rng, counts[name], x_test, y_test)
            log(f"{name}: reading {len(items)} images")
            start = time.perf_counter()
            if name == "drawn":
                answers = read_drawings(app, items, log)
            else:
                answers = read_uploads(client, items, number=name in NUMBERS, log=log)
            row = score(name, answers, time.perf_counter() - start)
            sheet = f"errors-{name}.png"
            if contact_sheet(answers, out / sheet, number=name in NUMBERS):
                row["sheet"] = sheet
            rows.append(row)
            log(f"{name}: read right {pct(row['accuracy'])}, not a digit {pct(row['not_a_digit'])}")
        name = client.get("/api/model").json()["name"]
    write_json(out / "results.json", {"model": name, "seed": seed, "sets": rows})
    (out / "report.md").write_text(markdown(rows, name, seed, scale))
    log(f"wrote {out / 'report.md'}")
    return rows
