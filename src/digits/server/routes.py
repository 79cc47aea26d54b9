"""The routes: the drawing page and an offline API index (``pages``), and the JSON API (``api``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from digits import number_reader
from digits.inference import reading, second_look
from digits.preprocess import normalise, thinned
from digits.segmentation import segment_number
from digits.server.answers import ERRORS, IMAGE_BODY, DigitAnswer, NumberAnswer

#: The drawing page's files.
STATIC = Path(__file__).parent.parent / "static"

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api")


def _pixels(image: np.ndarray) -> list[list[int]]:
    """The 28x28 model input as rows of grey levels 0-255 (exact: the input is quantised to bytes)."""
    return np.round(image * 255).astype(np.uint8).tolist()


def _timing(times: dict, inference_start: float, start: float) -> dict:
    end = time.perf_counter()
    times["inference_ms"] = (end - inference_start) * 1e3
    times["total_ms"] = (end - start) * 1e3
    return {key: round(value, 3) for key, value in times.items()}


def _image_info(image) -> dict:
    return {"width": image.width, "height": image.height, "format": image.format}


@pages.api_route("/", methods=["GET", "HEAD"])
async def index():
    return FileResponse(STATIC / "index.html")


@pages.get("/docs")
async def docs(request: Request):
    rows = "".join(
        f"<li><code>{method.upper()} {route}</code> {op.get('summary', '')}</li>"
        for route, methods in request.app.openapi()["paths"].items()
        for method, op in methods.items()
    )
    return HTMLResponse(
        f"<!doctype html><title>digits API</title><h1>digits API</h1><ul>{rows}</ul>"
        '<p>The full OpenAPI description: <a href="/openapi.json">/openapi.json</a>.</p>'
    )


@pages.get("/metrics")
async def metrics(request: Request):
    """Prometheus metrics of every worker: requests, latency, answers, the model."""
    exposed = request.app.state.reader.metrics
    return Response(exposed.exposition(), media_type=exposed.content_type)


@api.get("/health", summary="Liveness: the server is up and the model loaded")
async def health(request: Request):
    reader = request.app.state.reader
    return {
        "status": "ok",
        "model": reader.classifier.name,
        "uptime_s": round(time.monotonic() - reader.started, 1),
        "pid": os.getpid(),  # which worker process answered (digits serve --workers N)
    }


@api.get("/model", summary="The model being served: name, test accuracy, input spec")
async def model(request: Request):
    return request.app.state.reader.info


@api.post(
    "/predict",
    summary="Read one digit from an image",
    openapi_extra={"requestBody": IMAGE_BODY},
    responses={200: {"model": DigitAnswer}, **ERRORS},
)
async def predict(request: Request):
    """Read the digit in an uploaded image (multipart ``file``, or JSON ``{"image": base64}``).

    Returns the digit, its calibrated confidence, a ``low_confidence`` flag, ``not_a_digit`` (the
    image does not look like a digit at all: a letter, a drawing, an object), the ten
    probabilities, the 28x28 image the model saw (``processed``, grey levels 0-255) and timings.
    """
    reader = request.app.state.reader
    start = time.perf_counter()
    (image, processed), times = await reader.decoder.decoded(request, normalise)
    inference_start = time.perf_counter()
    row = (await reader.predictor.predict(processed[np.newaxis]))[0]
    answer = reading(row, reader.reject_below, processed)
    if answer["not_a_digit"]:
        # Rare (a refused thick-pen digit), so not batched; but thinning a big photo's strokes can
        # take a few hundred milliseconds, so off the event loop, where it would hold up every request.
        again = await anyio.to_thread.run_sync(
            second_look,
            answer,
            lambda: thinned(image.gray),
            reader.predictor.predict_now,
            reader.reject_below,
        )
        if again:
            answer, processed = again
    reader.metrics.count_answer(answer)
    return JSONResponse(
        {
            **answer,
            "processed": _pixels(processed),
            "image": _image_info(image),
            "timing": _timing(times, inference_start, start),
        }
    )


@api.post(
    "/predict-number",
    summary="Read a multi-digit number from an image",
    openapi_extra={"requestBody": IMAGE_BODY},
    responses={200: {"model": NumberAnswer}, **ERRORS},
)
async def predict_number(request: Request):
    """Read a number written left to right: each mark (or each part of a wide mark where
    neighbours touch) is classified as one digit, and a wide mark may be read whole as two touching
    digits, or as a digit beside a pair where three touch.

    Returns ``number`` (a string of the marks that are digits), ``not_a_number`` (no mark is a
    digit), ``confidence`` (the chance that the whole number is right: every mark segmented right
    and every digit read right), a
    ``low_confidence`` flag and, for each mark, its box in the original image's pixels, its
    reading (``not_a_digit`` for a stray mark, left out of ``number``) and the 28x28 image the
    model saw.
    """
    reader = request.app.state.reader
    start = time.perf_counter()
    (image, candidates), times = await reader.decoder.decoded(request, segment_number)
    inference_start = time.perf_counter()
    rows = await reader.predictor.predict(number_reader.candidate_images(candidates))
    # Rare (a refused marker's digit), so not batched; off the event loop, as thinning can be slow.
    candidates, rows = await anyio.to_thread.run_sync(
        number_reader.look_again, candidates, rows, reader.predictor.predict_now, reader.reject_below
    )
    pairs, triples = await anyio.to_thread.run_sync(
        number_reader.pair_probabilities, candidates, rows, reader.reject_below, reader.pair_model
    )
    number, crops = number_reader.answer(candidates, rows, reader.reject_below, image.scale, pairs, triples)
    for mark, crop in zip(number["digits"], crops, strict=True):
        reader.metrics.count_answer(mark)
        mark["processed"] = _pixels(crop.image)
    return JSONResponse(
        {
            **number,
            "image": _image_info(image),
            "timing": _timing(times, inference_start, start),
        }
    )
