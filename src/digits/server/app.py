"""The app factory: one trained model, the pages and API routers, errors answered as JSON."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from digits import runs
from digits.images import MAX_PIXELS
from digits.inference import LOW_CONFIDENCE, load_classifier, not_a_digit_below, resolve_model_path
from digits.pairs import PairModel
from digits.server.answers import ApiError
from digits.server.batching import BatchingPredictor
from digits.server.metrics import Metrics, MetricsMiddleware
from digits.server.routes import STATIC, api, pages
from digits.server.uploads import Decoder

#: Largest request body accepted (an image, or its base64 in JSON), checked before decoding.
MAX_UPLOAD_BYTES = 5 * 1024 * 1024


@dataclass
class Reader:
    """What every route needs: the model, its batching predictor, the upload decoder, its description,
    and the model of touching pairs the number reader also reads with."""

    classifier: object
    predictor: BatchingPredictor
    decoder: Decoder
    info: dict
    reject_below: float
    started: float
    metrics: Metrics
    pair_model: PairModel


def model_info(classifier) -> dict:
    """``GET /api/model``'s description of the model being served."""
    metrics = runs.read_metrics(classifier.path.parent)
    return {
        "name": classifier.name,
        "file": classifier.path.name,
        "test_accuracy": metrics.test_accuracy if metrics else None,
        "input": {
            "shape": [28, 28, 1],
            "dtype": "float32",
            "range": [0.0, 1.0],
            "layout": "white digit on black; longer side 20 px, centre of mass at the centre of 28x28",
        },
        "output": "ten probabilities, for the digits 0 to 9",
        "low_confidence_below": LOW_CONFIDENCE,
        "calibrated": hasattr(classifier, "calibration"),
        "not_a_digit_below": not_a_digit_below(classifier),
        "max_pixels": MAX_PIXELS,
    }


async def _api_error(request: Request, exc: ApiError):
    # A body that stopped coming leaves the connection mid-request: end it with the answer.
    headers = {"connection": "close"} if exc.status == 408 else None
    return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status, headers=headers)


async def _http_error(request: Request, exc: HTTPException):
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": code, "detail": exc.detail}, exc.status_code, headers=exc.headers)


def create_app(
    model_path: str | os.PathLike | None = None,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    threads: int | None = None,
    cors_origins: tuple[str, ...] = (),
    workers_replaced: int = 0,
):
    """The FastAPI application serving one model (see ``resolve_model_path`` for the default).

    ``threads`` caps the model's compute threads; ``workers_replaced`` (from ``serve``) is how many
    workers died and were replaced before this one started; ``cors_origins`` are the web origins (such as
    ``https://example.org``, or ``*``) whose pages may call the API from a browser: none by default.
    """
    from digits import __version__

    path = resolve_model_path(model_path)
    classifier = load_classifier(path, threads)
    predictor = BatchingPredictor(classifier)
    for size in (1, 2, 8):  # trace the graph and set up its kernels before the first request
        predictor.predict_now(np.zeros((size, 28, 28), dtype=np.float32))
    info = {**model_info(classifier), "max_upload_bytes": max_upload_bytes}

    app = FastAPI(
        title="digits",
        version=__version__,
        description="Read handwritten digits from drawings, photos and scans with an MNIST model.",
        docs_url=None,  # the usual Swagger UI loads from a CDN; routes.py serves an offline index
        redoc_url=None,
    )
    app.state.reader = Reader(
        classifier,
        predictor,
        Decoder(max_upload_bytes),
        info,
        not_a_digit_below(classifier),
        time.monotonic(),
        Metrics(classifier.name, workers_replaced),
        PairModel(threads=threads),
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.include_router(pages)
    app.include_router(api)
    app.add_middleware(MetricsMiddleware, metrics=app.state.reader.metrics)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    return app
