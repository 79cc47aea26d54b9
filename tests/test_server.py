"""The JSON API and the page: every endpoint, and every kind of bad input answered with a clear 4xx.

API mechanics are tested against an untrained model (built in a second, no data needed); only the
accuracy checks need a trained one and use the packaged default model when it is there.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from conftest import free_port, spiral
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from digits import DigitsError
from digits.images import decode_image
from digits.inference import DEFAULT_MODEL, resolve_model_path
from digits.number_reader import MARK_SEGMENTED_RIGHT
from digits.server import create_app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory) -> Path:
    """A freshly initialised seed CNN: the right shapes, meaningless answers."""
    import keras

    from digits.models import build_model

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_model("seed-cnn").save(path)
    return path


@pytest.fixture(scope="module")
def client(untrained_model) -> TestClient:
    with TestClient(create_app(untrained_model, max_upload_bytes=200_000)) as client:
        yield client


@pytest.fixture(scope="module")
def trained_client() -> TestClient:
    """The app with a trained model: ``$DIGITS_MODEL``, else the packaged default model."""
    try:
        model = resolve_model_path()
    except DigitsError as exc:
        pytest.skip(f"no trained model: {exc}")
    with TestClient(create_app(model)) as client:
        yield client


def png(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def seven(size=(280, 280)) -> Image.Image:
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).line([(90, 60), (190, 60), (120, 220)], fill=0, width=20)
    return image


def upload(data: bytes, name: str = "digit.png", content_type: str = "image/png") -> dict:
    return {"files": {"file": (name, data, content_type)}}


def assert_refused(client: TestClient, response: httpx.Response, status: int, code: str) -> None:
    """The exact status, a JSON error with a code and a message, and a server that still answers."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["detail"]
    assert client.get("/api/health").status_code == 200


# ---------------------------------------------------------------------------- endpoints


def test_health(client):
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["model"]


def test_model_info(client):
    body = client.get("/api/model").json()
    assert body["name"] == "seed_cnn"
    assert "test_accuracy" in body
    assert body["input"]["shape"] == [28, 28, 1] and body["input"]["range"] == [0.0, 1.0]
    assert body["max_upload_bytes"] == 200_000 and body["low_confidence_below"] == 0.6


def calibrated_copy(model: Path, folder: Path, not_a_digit_below: float) -> Path:
    """A run folder holding ``model`` with a calibration that says "not a digit" under the threshold."""
    import shutil

    from digits.calibration import Calibration

    shutil.copy(model, folder / "model.keras")
    Calibration(1.0, not_a_digit_below, {"validation_digits": 0}).save(folder)
    return folder


@pytest.fixture(scope="module")
def refusing_client(untrained_model, tmp_path_factory) -> TestClient:
    """The untrained model calibrated to call anything under 99% confidence "not a digit"."""
    with TestClient(
        create_app(calibrated_copy(untrained_model, tmp_path_factory.mktemp("refusing"), 0.99))
    ) as client:
        yield client


def test_an_uncalibrated_model_never_says_not_a_digit(client):
    body = client.post("/api/predict", **upload(png(seven()))).json()
    assert body["not_a_digit"] is False
    info = client.get("/api/model").json()
    assert info["calibrated"] is False and info["not_a_digit_below"] == 0.0


def test_not_a_digit_is_answered_below_the_models_threshold(refusing_client):
    info = refusing_client.get("/api/model").json()
    assert info["calibrated"] is True and info["not_a_digit_below"] == 0.99
    body = refusing_client.post("/api/predict", **upload(png(seven()))).json()
    assert body["not_a_digit"] is True and body["confidence"] < 0.99
    assert 0 <= body["digit"] <= 9 and len(body["probabilities"]) == 10  # still the closest digit


def test_a_scribble_is_not_a_digit_however_sure_the_model_is(untrained_model, tmp_path):
    image = Image.fromarray(spiral(3))
    lenient_model = calibrated_copy(untrained_model, tmp_path, 1e-6)  # confidence never refuses
    with TestClient(create_app(lenient_model)) as lenient:
        assert lenient.post("/api/predict", **upload(png(image))).json()["not_a_digit"] is True
        assert lenient.post("/api/predict", **upload(png(seven()))).json()["not_a_digit"] is False


def test_a_number_of_marks_that_are_not_digits_is_not_a_number(refusing_client):
    image = Image.new("L", (600, 220), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(80, 40), (80, 180)], fill=0, width=14)
    draw.line([(300, 40), (300, 180)], fill=0, width=14)
    body = refusing_client.post("/api/predict-number", **upload(png(image))).json()
    assert body["number"] == "" and body["not_a_number"] is True
    assert len(body["digits"]) == 2 and all(d["not_a_digit"] for d in body["digits"])


def test_openapi_documents_the_answers(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"not_a_digit", "digit", "confidence", "probabilities", "processed"} <= set(
        schemas["DigitAnswer"]["properties"]
    )
    assert "not a digit" in schemas["DigitAnswer"]["properties"]["not_a_digit"]["description"]
    assert {"number", "not_a_number", "digits"} <= set(schemas["NumberAnswer"]["properties"])
    assert "not_a_digit" in schemas["Mark"]["properties"]


def test_openapi_spec_lists_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/predict-number", "/api/health", "/api/model"} <= set(spec["paths"])
    body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert "/api/predict" in client.get("/docs").text


def test_page_and_its_assets_are_served_with_no_external_urls(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for path in ["/", "/static/app.js", "/static/style.css"]:
        response = client.get(path)
        assert response.status_code == 200
        assert "http://" not in response.text and "https://" not in response.text, path


def test_predict_multipart(client):
    body = client.post("/api/predict", **upload(png(seven()))).json()
    assert 0 <= body["digit"] <= 9
    assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-3
    assert body["confidence"] == max(body["probabilities"])
    assert body["low_confidence"] == (body["confidence"] < 0.6)
    processed = np.array(body["processed"])
    assert processed.shape == (28, 28) and processed.min() == 0 and processed.max() == 255
    assert body["image"] == {"width": 280, "height": 280, "format": "PNG"}
    assert set(body["timing"]) == {"read_ms", "preprocess_ms", "inference_ms", "total_ms"}


def test_predict_json_base64_and_data_url(client):
    data = png(seven())
    by_upload = client.post("/api/predict", **upload(data)).json()
    encoded = base64.b64encode(data).decode()
    for image in [encoded, "data:image/png;base64," + encoded]:
        body = client.post("/api/predict", json={"image": image}).json()
        assert body["probabilities"] == by_upload["probabilities"]


def test_predict_number(client):
    image = Image.new("L", (600, 220), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(80, 40), (80, 180)], fill=0, width=14)
    draw.line([(200, 40), (290, 40), (230, 180)], fill=0, width=14)
    draw.ellipse([(380, 40), (480, 180)], outline=0, width=14)
    body = client.post("/api/predict-number", **upload(png(image))).json()
    assert len(body["number"]) == 3 and body["number"].isdigit()
    assert [d["digit"] for d in body["digits"]] == [int(c) for c in body["number"]]
    xs = [d["box"]["x"] for d in body["digits"]]
    assert xs == sorted(xs) and 60 <= xs[0] <= 80
    # Every digit read right and every one of the three marks segmented right.
    product = np.prod([d["confidence"] for d in body["digits"]])
    assert body["confidence"] == pytest.approx(product * MARK_SEGMENTED_RIGHT**3, abs=1e-6)
    assert body["confidence"] < product
    assert all(np.array(d["processed"]).shape == (28, 28) for d in body["digits"])


def test_predict_number_on_the_command_line_answers_as_the_api(client, untrained_model, tmp_path, capsys):
    from digits.cli import main

    image = Image.new("L", (2400, 600), 255)  # over the working resolution, so boxes are scaled back
    draw = ImageDraw.Draw(image)
    draw.line([(300, 100), (300, 500)], fill=0, width=40)
    draw.line([(800, 100), (1100, 100), (900, 500)], fill=0, width=40)
    draw.ellipse([(1500, 100), (1800, 500)], outline=0, width=40)
    path = tmp_path / "number.png"
    path.write_bytes(png(image))
    by_api = client.post("/api/predict-number", **upload(path.read_bytes())).json()
    assert main(["predict", "--number", "--json", str(untrained_model), str(path)]) == 0
    by_cli = json.loads(capsys.readouterr().out)
    for mark in by_api["digits"]:
        del mark["processed"]
    assert by_cli == {"file": str(path), **{k: v for k, v in by_api.items() if k not in ("image", "timing")}}
    assert len(by_cli["digits"]) == 3 and by_cli["digits"][2]["box"]["x"] > 1400


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_boxes_and_size_of_a_phone_photo_stored_sideways_are_upright(client, fmt):
    # Phones store a portrait photo's pixels sideways and record the quarter turn in EXIF.
    upright = Image.new("L", (3000, 600), 255)
    draw = ImageDraw.Draw(upright)
    draw.line([(500, 100), (500, 500)], fill=0, width=40)
    draw.line([(2000, 100), (2000, 500)], fill=0, width=40)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    sideways = png(upright.rotate(90, expand=True), fmt, exif=exif)
    answers = [
        client.post("/api/predict-number", **upload(data, f"d.{fmt}", f"image/{fmt}")).json()
        for data in (png(upright, fmt), sideways)
    ]
    assert [a["image"]["width"] for a in answers] == [3000, 3000]
    assert [a["image"]["height"] for a in answers] == [600, 600]
    boxes = [[(d["box"]["x"], d["box"]["width"]) for d in a["digits"]] for a in answers]
    assert np.abs(np.array(boxes[0]) - np.array(boxes[1])).max() <= 6


def test_predict_number_boxes_are_in_original_pixels(client):
    # Wider than the working resolution, so the image is reduced before segmenting.
    image = Image.new("L", (3000, 600), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(500, 100), (500, 500)], fill=0, width=40)
    draw.line([(2000, 100), (2000, 500)], fill=0, width=40)
    digits = client.post("/api/predict-number", **upload(png(image))).json()["digits"]
    assert [abs(d["box"]["x"] - x) <= 12 for d, x in zip(digits, (480, 1980), strict=True)] == [True, True]


def test_concurrent_requests_are_batched_correctly(untrained_model):
    app = create_app(untrained_model)
    images = [png(seven()), png(seven(size=(400, 300))), png(seven().rotate(20, fillcolor=255))]

    async def fire():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as session:
            return await asyncio.gather(
                *(session.post("/api/predict", **upload(images[i % 3])) for i in range(30))
            )

    responses = asyncio.run(fire())
    assert all(r.status_code == 200 for r in responses)
    for i, response in enumerate(responses):
        expected = responses[i % 3].json()["probabilities"]
        assert np.allclose(response.json()["probabilities"], expected, atol=1e-5)


@pytest.mark.parametrize(
    ("endpoint", "slow_step"),
    [
        ("/api/predict", "digits.server.routes.thinned"),
        ("/api/predict-number", "digits.number_reader.thin_strokes"),
    ],
)
def test_a_slow_second_look_does_not_hold_up_other_requests(
    untrained_model, monkeypatch, endpoint, slow_step
):
    import threading

    entered, release, order = threading.Event(), threading.Event(), []

    def slow_thinning(_):  # a big photo's marker digit: thinning it takes seconds
        entered.set()
        release.wait(timeout=10)
        order.append("thinned")
        return None

    monkeypatch.setattr(slow_step, slow_thinning)
    app = create_app(untrained_model)
    app.state.reader.reject_below = 1.0  # every answer "not a digit": every one is looked at again

    async def fire():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as session:
            slow = asyncio.create_task(session.post(endpoint, **upload(png(seven()))))
            while not entered.is_set():
                await asyncio.sleep(0.01)
            health = await session.get("/api/health")
            order.append("health")
            release.set()
            return await slow, health

    slow, health = asyncio.run(fire())
    assert slow.status_code == 200 and health.status_code == 200
    assert order == ["health", "thinned"]  # answered while the thinning was still under way


# ---------------------------------------------------------------------------- bad input


def test_not_an_image(client):
    response = client.post("/api/predict", **upload(b"just some text, not an image"))
    assert_refused(client, response, 422, "not_an_image")


def test_empty_file(client):
    assert_refused(client, client.post("/api/predict", **upload(b"")), 422, "empty")


def test_truncated_image(client):
    data = png(seven().convert("RGB"), "JPEG")
    response = client.post("/api/predict", **upload(data[: len(data) // 2], "digit.jpg", "image/jpeg"))
    assert_refused(client, response, 422, "truncated")


def test_decompression_bomb(client):
    bomb = png(Image.new("1", (5100, 5000)))
    assert len(bomb) < 10_000  # small on the wire, 25.5 megapixels decoded
    assert_refused(client, client.post("/api/predict", **upload(bomb)), 413, "too_large")


def test_oversize_upload(client):
    big = bytes(300_000)
    assert_refused(client, client.post("/api/predict", **upload(big)), 413, "too_large")
    assert_refused(client, client.post("/api/predict", json={"image": "A" * 300_000}), 413, "too_large")


def test_oversize_upload_without_content_length(client):
    def chunks():
        for _ in range(30):
            yield bytes(10_000)

    response = client.post("/api/predict", content=chunks(), headers={"content-type": "application/json"})
    assert_refused(client, response, 413, "too_large")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "image/png", "application/x-www-form-urlencoded", None]
)
def test_wrong_request_content_type(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/api/predict", content=png(seven()), headers=headers)
    assert_refused(client, response, 415, "unsupported_media_type")


def test_uploaded_file_that_declares_a_non_image_type(client):
    response = client.post("/api/predict", **upload(png(seven()), "notes.txt", "text/plain"))
    assert_refused(client, response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "body",
    [b'{"image": ', b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 30_000 + b"1" + b"}" * 30_000],
    ids=["cut-off", "nested-lists", "nested-objects"],
)
def test_malformed_json(client, body):
    response = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert_refused(client, response, 400, "bad_request")


def test_malformed_base64(client):
    assert_refused(client, client.post("/api/predict", json={"image": "not base64!"}), 400, "bad_request")
    response = client.post("/api/predict", json={"image": "data:image/png,rawdata"})
    assert_refused(client, response, 400, "bad_request")


@pytest.mark.parametrize("payload", [{}, {"image": 42}, ["image"], "image", {"file": "abc"}])
def test_json_without_an_image_field(client, payload):
    assert_refused(client, client.post("/api/predict", json=payload), 422, "missing_image")


def test_base64_of_something_that_is_not_an_image(client):
    response = client.post("/api/predict", json={"image": base64.b64encode(b"hello").decode()})
    assert_refused(client, response, 422, "not_an_image")


def test_form_without_a_file(client):
    response = client.post(
        "/api/predict", data={"image": "abc"}, files={"other": ("x.png", b"x", "image/png")}
    )
    assert_refused(client, response, 422, "missing_image")


def test_malformed_multipart(client):
    response = client.post(
        "/api/predict",
        content=b"--nothing-like-the-boundary\r\nbroken",
        headers={"content-type": "multipart/form-data"},
    )
    assert_refused(client, response, 400, "bad_request")


def test_multipart_cut_off_before_its_closing_boundary(client):
    part = b'--B\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
    part += b"Content-Type: image/png\r\n\r\n" + png(seven())
    headers = {"content-type": "multipart/form-data; boundary=B"}
    response = client.post("/api/predict", content=part, headers=headers)
    assert_refused(client, response, 400, "bad_request")
    complete = client.post("/api/predict", content=part + b"\r\n--B--\r\n", headers=headers)
    assert complete.status_code == 200, complete.text


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "TIFF", "WEBP"])
def test_animated_or_multi_page(client, fmt):
    frames = [seven(), seven().rotate(30, fillcolor=255)]
    data = png(frames[0], fmt, save_all=True, append_images=frames[1:])
    response = client.post("/api/predict", **upload(data, f"digit.{fmt.lower()}", f"image/{fmt.lower()}"))
    assert_refused(client, response, 422, "animated")


def test_blank_image_has_no_digit(client):
    blank = png(Image.new("RGB", (300, 300), "white"))
    assert_refused(client, client.post("/api/predict", **upload(blank)), 422, "no_digit")
    assert_refused(client, client.post("/api/predict-number", **upload(blank)), 422, "no_digit")


def test_16_bit_image_is_read(client):
    sixteen = Image.fromarray(np.asarray(seven(), dtype=np.uint16) * 257)
    assert sixteen.mode.startswith("I")
    response = client.post("/api/predict", **upload(png(sixteen)))
    assert response.status_code == 200, response.text


def test_alpha_image_is_read_like_its_opaque_version(client):
    rgba = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).line([(90, 60), (190, 60), (120, 220)], fill=(0, 0, 0, 255), width=20)
    with_alpha = client.post("/api/predict", **upload(png(rgba))).json()
    opaque = client.post("/api/predict", **upload(png(seven()))).json()
    assert np.abs(np.array(with_alpha["processed"]) - np.array(opaque["processed"])).max() <= 20


def test_wrong_method_and_unknown_path_get_the_api_error_body(client):
    assert_refused(client, client.get("/api/predict"), 405, "method_not_allowed")
    assert_refused(client, client.get("/api/nothing"), 404, "not_found")
    assert client.head("/").status_code == 200


def test_fuzzed_uploads_never_cause_a_server_error(client):
    rng = np.random.default_rng(0)
    base = png(seven(size=(64, 64)))
    for _ in range(60):
        data = bytearray(base)
        for position in rng.integers(0, len(data), size=rng.integers(1, 10)):
            data[position] = rng.integers(0, 256)
        response = client.post("/api/predict", **upload(bytes(data[: rng.integers(1, len(data) + 1)])))
        assert response.status_code in (200, 413, 422), response.text
    assert client.get("/api/health").status_code == 200


# ---------------------------------------------------------------------------- the model


def test_big_images_are_decoded_a_few_at_a_time(untrained_model, monkeypatch):
    import threading
    import time

    from digits.server import uploads

    running, most, lock = 0, 0, threading.Lock()

    def counting_decode(*args):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return decode_image(*args)

    monkeypatch.setattr(uploads, "decode_image", counting_decode)
    app = create_app(untrained_model)
    big = png(seven(size=(700, 700)))  # over the pixel count decoded inline

    async def fire():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as session:
            return await asyncio.gather(*(session.post("/api/predict", **upload(big)) for _ in range(8)))

    assert all(r.status_code == 200 for r in asyncio.run(fire()))
    assert most == uploads.BIG_DECODES


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "70000"], "port must be between 0 and 65535"),
        (["--max-upload-mb", "0"], "must be positive"),
        (["--max-upload-mb", "inf"], "must be positive and finite"),
        (["--max-upload-mb", "nan"], "must be positive and finite"),
    ],
)
def test_serve_refuses_impossible_settings(untrained_model, capsys, flags, message):
    from digits.cli import main

    assert main(["serve", "--model", str(untrained_model), *flags]) == 2
    assert message in capsys.readouterr().err


def test_one_worker_on_a_taken_port_fails_before_loading_the_model(untrained_model, capsys, monkeypatch):
    import socket

    from digits.cli import main
    from digits.server import workers

    monkeypatch.setattr(workers, "create_app", lambda *a, **k: pytest.fail("the model was loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(untrained_model), "--workers", "1", "--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_workers_report_a_damaged_model_in_one_line(tmp_path):
    import subprocess
    import sys

    damaged = tmp_path / "model.keras"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    command = [sys.executable, "-m", "digits", "serve", "--model", str(damaged), "--workers", "2"]
    done = subprocess.run([*command, "--port", str(free_port())], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    # Said once, by the server, not once per worker.
    assert done.stderr == f"digits: error: {damaged}: not a readable model file (ValueError)\n"


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(DigitsError, match="no model there"):
        resolve_model_path(tmp_path / "nothing.keras")


def test_serve_command_reports_a_missing_model(tmp_path, capsys):
    from digits.cli import main

    assert main(["serve", "--model", str(tmp_path / "nothing.keras")]) == 1
    assert "no model there" in capsys.readouterr().err


def test_model_env_var_is_used(monkeypatch, untrained_model):
    monkeypatch.setenv("DIGITS_MODEL", str(untrained_model))
    assert resolve_model_path() == untrained_model


def test_trained_model_reads_user_like_images(trained_client):
    from digits import data

    try:
        (_, _), (x_test, y_test) = data.load_mnist()
    except data.DataError as exc:
        pytest.skip(f"MNIST files not available: {exc}")
    from digits.realworld import photo_of as render

    rng = np.random.default_rng(1)
    correct = 0
    for i in range(100):
        body = trained_client.post("/api/predict", **upload(render(x_test[i], rng), "d.jpg", "image/jpeg"))
        correct += body.json()["digit"] == y_test[i]
    assert correct >= 95


def test_trained_model_reads_touching_digits_with_the_pair_model(trained_client, monkeypatch):
    from digits import data, pairs

    try:
        (_, _), (x_test, y_test) = data.load_mnist()
    except data.DataError as exc:
        pytest.skip(f"MNIST files not available: {exc}")
    pair_model = trained_client.app.state.reader.pair_model
    read_by_pair_model = []
    monkeypatch.setattr(
        pair_model,
        "predict_proba",
        lambda images, real=pair_model.predict_proba: read_by_pair_model.append(len(images)) or real(images),
    )
    rng = np.random.default_rng(3)
    right = 0
    for i, j in rng.choice(len(x_test), size=(40, 2), replace=False):
        mark = pairs.touching([x_test[i] / 255.0, x_test[j] / 255.0], rng)
        ink = np.pad(mark, 12)
        image = Image.fromarray((255 - ink * 255).astype(np.uint8)).resize(
            (ink.shape[1] * 4, ink.shape[0] * 4)
        )
        body = trained_client.post("/api/predict-number", **upload(png(image))).json()
        right += body["number"] == f"{y_test[i]}{y_test[j]}"
    assert right >= 36
    assert len(read_by_pair_model) >= 30


def test_trained_model_reads_a_drawn_seven(trained_client):
    body = trained_client.post("/api/predict", **upload(png(seven()))).json()
    assert body["digit"] == 7 and not body["low_confidence"]


def test_packaged_default_model_reports_its_accuracy():
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"no packaged default model at {DEFAULT_MODEL}")
    metrics = json.loads((DEFAULT_MODEL.parent / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.994
    with TestClient(create_app(DEFAULT_MODEL)) as client:
        assert client.get("/api/model").json()["test_accuracy"] == metrics["test_accuracy"]


def test_two_worker_processes_share_the_port_and_stop_together(untrained_model):
    import os
    import subprocess
    import sys
    import time

    port = free_port()
    command = [sys.executable, "-m", "digits", "serve", "--model", str(untrained_model)]
    server = subprocess.Popen([*command, "--workers", "2", "--port", str(port)], cwd=ROOT)
    try:
        pids = set()
        deadline = time.monotonic() + 120
        # Each new connection lands on either worker; both must come up and answer.
        while len(pids) < 2 and time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json()
                pids.add(health["pid"])
            except httpx.TransportError:
                time.sleep(0.5)
        assert len(pids) == 2
        answer = httpx.post(f"http://127.0.0.1:{port}/api/predict", **upload(png(seven())), timeout=10)
        assert answer.status_code == 200
        # A second server on the same port is refused with a message, not shared silently.
        taken = subprocess.run(
            [*command, "--workers", "2", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
        assert taken.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
        assert "Traceback" not in taken.stderr
    finally:
        # SIGTERM, as kill or a service manager sends (Ctrl-C's SIGINT is ignored in background jobs).
        server.terminate()
        assert server.wait(timeout=60) == 0
    for pid in pids:  # the workers went with it
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
