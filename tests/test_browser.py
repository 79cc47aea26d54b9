"""End to end in a real browser: headless Chromium draws digits on the page's canvas with the mouse.

Starts ``digits serve``'s app with uvicorn on a free loopback port, drives Debian's Chromium with
Playwright, and saves screenshots under ``test-artifacts/``. Needs a trained model: ``$DIGITS_MODEL``
or the packaged default. Skipped when Chromium is missing, unless ``$CI`` is set (then it fails).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

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
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required when CI is set)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server_url():
    import uvicorn

    from digits import DigitsError
    from digits.server import create_app, resolve_model_path

    try:
        model = resolve_model_path()
    except DigitsError as exc:
        _unavailable(f"no trained model to serve: {exc}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(model), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server_url):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(server_url + "/")
    page.wait_for_selector("body[data-state=idle]")
    yield page
    context.close()


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw strokes with the mouse; points are fractions of the canvas's width and height."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=12)
        page.mouse.up()


def prediction(page) -> str:
    """The prediction shown once the page has the answer to its latest drawing."""
    page.wait_for_function("document.body.dataset.state === 'done'", timeout=15_000)
    return page.locator("#digit").inner_text()


SEVEN = [[(0.38, 0.22), (0.62, 0.22), (0.45, 0.82)]]
ONE = [[(0.50, 0.18), (0.50, 0.84)]]


def test_hand_drawn_seven_is_read(page):
    draw(page, SEVEN)
    assert prediction(page) == "7"
    bars = page.locator("#bars li")
    assert bars.count() == 10
    assert "top" in (bars.nth(7).get_attribute("class") or "")
    assert page.locator("#timing").inner_text().startswith("Server time")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-seven.png"), full_page=True)


def test_undo_clear_and_draw_again(page):
    draw(page, ONE)
    assert prediction(page) == "1"
    draw(page, [[(0.2, 0.5), (0.3, 0.5)]])  # a stray mark...
    page.click("#undo")  # ...taken back
    assert prediction(page) == "1"
    page.click("#clear")
    assert page.locator("#digit").inner_text() == "–"
    assert page.locator("#status").inner_text() == "Draw a digit to start"
    assert page.locator("#undo").is_disabled()
    page.fill("#stroke", "30")
    draw(page, SEVEN)
    assert prediction(page) == "7"


def test_uploaded_file_is_read(page):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (300, 300), "white")
    ImageDraw.Draw(image).line([(150, 50), (150, 250)], fill="black", width=22)
    out = io.BytesIO()
    image.save(out, "PNG")
    page.set_input_files(
        "#file", files=[{"name": "one.png", "mimeType": "image/png", "buffer": out.getvalue()}]
    )
    assert prediction(page) == "1"
    assert page.locator("#preview").is_visible()


def test_whole_number_mode(page):
    page.click("text=A whole number")
    draw(page, [[(0.2, 0.2), (0.2, 0.8)]])
    draw(page, [[(0.45, 0.22), (0.65, 0.22), (0.5, 0.8)]])
    assert prediction(page) == "17"
    assert page.locator("#pieces li").count() == 2
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-number.png"), full_page=True)
