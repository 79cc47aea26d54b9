"""End to end in a real browser: headless Chromium draws digits on the page's canvas with the mouse.

Starts ``digits serve``'s app with uvicorn on a free loopback port, drives Debian's Chromium with
Playwright, and saves screenshots under ``test-artifacts/``. Needs a trained model: ``$DIGITS_MODEL``
or the packaged default. Skipped when Chromium is missing, unless ``$CI`` is set (then it fails).
"""

from __future__ import annotations

import io
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from digits.realworld_benchmark import CHROMIUM, CHROMIUM_ARGS
from digits.strokes import drawn_digits

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required when CI is set)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server_url():
    import uvicorn

    from digits import DigitsError
    from digits.inference import resolve_model_path
    from digits.server import create_app

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


# Test hook, run before the page's own script: window.delays holds extra milliseconds for the next
# answers, one per request, so that a test can make an answer arrive late; window.pending counts the
# requests whose answer the page has not read yet.
SLOW_FETCH = """
window.delays = [];
window.pending = 0;
const realFetch = window.fetch;
window.fetch = async (...args) => {
  const delay = window.delays.shift() || 0;
  window.pending++;
  const response = await realFetch(...args);
  await new Promise((resolve) => setTimeout(resolve, delay));
  const json = response.json.bind(response);
  response.json = async () => {
    try { return await json(); } finally { setTimeout(() => window.pending--, 0); }
  };
  return response;
};
"""


def open_page(browser, url: str, **options):
    context = browser.new_context(**options)
    context.add_init_script(SLOW_FETCH)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-state=idle]")
    return page


@pytest.fixture
def page(browser, server_url):
    page = open_page(browser, server_url + "/", viewport={"width": 1100, "height": 900})
    yield page
    page.context.close()


@pytest.fixture
def phone(browser, server_url):
    page = open_page(
        browser,
        server_url + "/",
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    yield page
    page.context.close()


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


def settle(page) -> None:
    """Wait until the page has read the answer to every request it sent (late ones included)."""
    page.wait_for_function("window.pending === 0", timeout=15_000)


def picture(size: tuple[int, int], lines: list[list[tuple[int, int]]], width: int, **save) -> bytes:
    """A PNG of black lines (lists of points, in pixels) on white paper."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    pen = ImageDraw.Draw(image)
    for line in lines:
        pen.line(line, fill="black", width=width, joint="curve")
    out = io.BytesIO()
    image.save(out, "PNG", **save)
    return out.getvalue()


def upload(page, data: bytes, name: str = "digit.png") -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": "image/png", "buffer": data}])


def text_box(locator) -> dict:
    """Where an element's text is drawn, which can overflow the element's own box."""
    return locator.evaluate(
        """(e) => {
            const range = document.createRange();
            range.selectNodeContents(e);
            const b = range.getBoundingClientRect();
            return {x: b.x, y: b.y, width: b.width, height: b.height};
        }"""
    )


def boxes_overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


SEVEN = [[(0.38, 0.22), (0.62, 0.22), (0.45, 0.82)]]
ONE = [[(0.50, 0.18), (0.50, 0.84)]]
SEVEN_PNG = picture((300, 300), [[(90, 60), (210, 60), (130, 250)]], 22)
TWELVE_PNG = picture(
    (400, 240), [[(100, 40), (100, 200)], [(220, 60), (300, 60), (300, 120), (220, 190), (310, 190)]], 20
)
# Twelve separate strokes: read as a 12-digit number.
LONG_NUMBER_PNG = picture((1300, 240), [[(60 + 100 * i, 40), (60 + 100 * i, 200)] for i in range(12)], 20)


def test_hand_drawn_seven_is_read(page):
    draw(page, SEVEN)
    assert prediction(page) == "7"
    bars = page.locator("#bars li")
    assert bars.count() == 10
    assert "top" in (bars.nth(7).get_attribute("class") or "")
    # The top bar's fill is drawn as wide as its percentage of the track (after its transition).
    percent = float(bars.nth(7).locator(".pct").inner_text().rstrip("%"))
    assert percent > 50
    track = bars.nth(7).locator(".track").bounding_box()
    page.wait_for_function(
        """([pct, width]) => {
            const fill = document.querySelectorAll('#bars .fill')[7].getBoundingClientRect();
            return fill.height > 0 && Math.abs(fill.width - width * pct / 100) < 2;
        }""",
        arg=[percent, track["width"]],
        timeout=5_000,
    )
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
    with page.expect_response("**/api/predict") as answer:
        upload(page, picture((300, 300), [[(150, 50), (150, 250)]], 22), "one.png")
    assert prediction(page) == "1"
    assert page.locator("#preview").is_visible()
    assert answer.value.json()["image"]["width"] == 300  # a small image is sent as it is


def test_large_photo_is_scaled_down_before_upload(page):
    # 2000x1000 and stored uncompressed: 6 MB, over the server's 5 MB limit, like a phone photo.
    big = picture((2000, 1000), [[(750, 150), (1250, 150), (900, 880)]], 70, compress_level=0)
    assert len(big) > 5 * 1024 * 1024
    with page.expect_response("**/api/predict") as answer:
        upload(page, big, "photo.png")
    assert prediction(page) == "7"
    image = answer.value.json()["image"]
    assert max(image["width"], image["height"]) <= 1600
    assert image["width"] / image["height"] == pytest.approx(2, rel=0.01)


def test_only_the_latest_answer_is_shown(page):
    # Clear while the drawing's answer is on its way: the page stays empty.
    page.evaluate("window.delays = [800, 800, 800]")
    draw(page, ONE)
    page.wait_for_function("document.body.dataset.state === 'busy'")
    page.click("#clear")
    settle(page)
    assert page.locator("#digit").inner_text() == "–"
    assert page.locator("#status").inner_text() == "Draw a digit to start"

    # A file chosen while the drawing's answer is late: the file's answer is the one shown.
    page.evaluate("window.delays = [800]")
    draw(page, ONE)
    page.wait_for_function("document.body.dataset.state === 'busy'")
    upload(page, SEVEN_PNG)
    settle(page)
    assert prediction(page) == "7"

    # Switching to numbers and straight back while the number's answer is late: one digit shown.
    upload(page, TWELVE_PNG)
    prediction(page)
    page.evaluate("window.delays = [800]")
    page.click("text=A whole number")
    page.click("text=One digit")
    settle(page)
    assert len(prediction(page)) == 1
    assert page.locator("#bars").is_visible()
    assert page.locator("#pieces-box").is_hidden()


def test_phone_layout_and_long_numbers(phone):
    width = 360
    assert phone.evaluate("document.documentElement.scrollWidth") <= width
    clear = phone.locator("#clear").bounding_box()
    assert clear["x"] >= 0 and clear["x"] + clear["width"] <= width
    title = phone.locator("h1")
    line = float(title.evaluate("(e) => parseFloat(getComputedStyle(e).fontSize)"))
    assert title.bounding_box()["height"] < 2 * line  # "Digit reader" on one line

    phone.click("text=A whole number")
    upload(phone, LONG_NUMBER_PNG)
    for size in [(360, 740), (1100, 900)]:
        phone.set_viewport_size({"width": size[0], "height": size[1]})
        assert prediction(phone) == "1" * 12
        number, text = text_box(phone.locator("#digit")), text_box(phone.locator(".answer-text"))
        assert not boxes_overlap(number, text), size
        card = phone.locator(".card.output").bounding_box()
        assert number["x"] + number["width"] <= card["x"] + card["width"], size
        assert phone.evaluate("document.documentElement.scrollWidth") <= size[0]
        if size[0] == 360:
            ARTIFACTS.mkdir(exist_ok=True)
            phone.screenshot(path=str(ARTIFACTS / "browser-phone.png"), full_page=True)


def test_accessibility_and_drops(page):
    # Both canvases have a role and a name; status and warnings are announced.
    assert page.get_by_role("img", name=re.compile("Drawing area")).count() == 1
    assert page.get_by_role("img", name=re.compile("28 by 28")).count() == 1
    for selector in ["#status", "#flag"]:
        live = page.locator(selector).evaluate(
            "(e) => e.getAttribute('aria-live') || ['status', 'alert'].includes(e.getAttribute('role'))"
        )
        assert live, selector

    # An image dropped on the drawing canvas is read.
    files = page.evaluate_handle(
        """(bytes) => {
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array(bytes)], "seven.png", {type: "image/png"}));
            return data;
        }""",
        list(SEVEN_PNG),
    )
    page.dispatch_event("#pad", "drop", {"dataTransfer": files})
    assert prediction(page) == "7"
    assert page.locator("#preview").is_visible()
    # Drawing, or Clear, puts the upload's thumbnail away.
    draw(page, ONE)
    assert prediction(page) == "1"
    assert page.locator("#preview").is_hidden()
    upload(page, SEVEN_PNG)
    assert prediction(page) == "7"
    page.click("#clear")
    assert page.locator("#preview").is_hidden()
    assert page.locator("#digit").inner_text() == "–"

    # The page names its icon, so the browser does not ask for a missing /favicon.ico.
    assert page.locator("head link[rel~=icon]").count() == 1


def test_real_world_benchmark_draws_on_the_page(browser):
    """The benchmark's drawn set: digits drawn with the mouse in Chromium and read through the page."""
    import numpy as np

    from digits.inference import resolve_model_path
    from digits.realworld_benchmark import read_drawings
    from digits.server import create_app

    drawings = drawn_digits(np.random.default_rng(0), count=3)
    app = create_app(resolve_model_path())
    answers = read_drawings(app, drawings, log=lambda _: None, browser=browser)
    assert [a.label for a in answers] == ["0", "1", "2"]
    for answer in answers:
        assert answer.confidence is not None and answer.processed[0].shape == (28, 28)
        assert answer.data.startswith(b"\x89PNG")  # the canvas as drawn, for the contact sheet


def test_the_page_says_when_a_drawing_is_not_a_digit(page):
    """The page's words for the API's not_a_digit answer (the answer itself is faked here: which
    drawings a model refuses is the real-world benchmark's business)."""
    import json

    answer = {
        "digit": 4,
        "confidence": 0.31,
        "low_confidence": True,
        "not_a_digit": True,
        "probabilities": [0.31] + [0.69 / 9] * 9,
        "processed": [[0] * 28] * 28,
        "image": {"width": 105, "height": 70, "format": "PNG"},
        "timing": {"read_ms": 0.1, "preprocess_ms": 1.0, "inference_ms": 0.5, "total_ms": 1.6},
    }
    page.route(
        "**/api/predict",
        lambda route: route.fulfill(content_type="application/json", body=json.dumps(answer)),
    )
    draw(page, [[(0.3, 0.3), (0.7, 0.7)], [(0.7, 0.3), (0.3, 0.7)]])
    assert prediction(page) == "?"
    assert page.locator("#status").inner_text() == "This does not look like a digit"
    assert "single digit" in page.locator("#flag").inner_text()
    assert page.locator("#bars li.top").count() == 0  # no digit is singled out
