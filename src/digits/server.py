"""The web app and JSON API: draw or upload a digit and have it read.

``create_app`` builds a FastAPI application around one trained model; ``serve`` runs it with uvicorn.

Endpoints: ``GET /`` (the drawing page), ``POST /api/predict``, ``POST /api/predict-number``,
``GET /api/health``, ``GET /api/model``, ``GET /openapi.json`` and ``GET /docs`` (an offline index
of the API: the usual Swagger UI loads from a CDN).

Every bad input is answered with a 4xx and a JSON body ``{"error": CODE, "detail": MESSAGE}``:

* 400 ``bad_request``: malformed JSON (nested too deeply included), base64 or multipart body;
* 413 ``too_large``: a request body over the upload limit (checked before decoding), or an image
  whose header claims more than ``max_pixels`` pixels (a decompression bomb);
* 415 ``unsupported_media_type``: a request that is neither multipart nor JSON, or an uploaded file
  whose declared type is not an image;
* 422: a well-formed request whose image cannot be used: ``missing_image``, ``not_an_image``,
  ``truncated``, ``animated``, ``unsupported_mode``, ``empty``, ``too_many_digits`` and ``no_digit``
  (the image decoded but is blank).

Unknown paths and wrong methods get the same body: 404 ``not_found``, 405 ``method_not_allowed``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from digits import DigitsError, import_tensorflow_quietly, number_reader, read_json
from digits.models import LOW_CONFIDENCE, not_a_digit_below, reading, resolve_model_path
from digits.preprocess import MAX_PIXELS, ImageError, decode_image, normalise, peek_pixels, segment_number

#: Largest request body accepted (an image, or its base64 in JSON), checked before decoding.
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
STATIC = Path(__file__).parent / "static"

# Small images are decoded on the event loop (cheaper than a thread hop); big ones in a thread so
# that one large photo does not stall every other request.
_INLINE_BYTES = 128 * 1024
_INLINE_PIXELS = 512 * 512
# Big images decode in at most this many threads per process: a 25-megapixel 16-bit PNG needs a few
# hundred MB while it is converted, and a few KB of such uploads must not add up to all the memory.
_BIG_DECODES = 2
_IMAGE_PART_TYPES = ("image/", "application/octet-stream")


class ApiError(Exception):
    """A request the API refuses: an HTTP status, a short machine-readable code and a message."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def limit_tensorflow_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools; the web server needs the other cores for HTTP and decoding."""
    import_tensorflow_quietly()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow already started (tests, a second app): it keeps the pools it has.


# ---------------------------------------------------------------------------- inference


class BatchingPredictor:
    """Runs the model on the event loop, once per turn of the loop for all the requests waiting.

    Under load, one model call serves many requests (16 images cost ~3x one image, not 16x); when
    idle, a request goes straight through. No worker thread: on two cores, handing each batch to a
    thread and back cost more (GIL hand-offs) than the model call itself.
    """

    def __init__(self, classifier):
        self._forward = classifier.predict_proba
        self._queue: list[tuple[np.ndarray, asyncio.Future]] = []

    def predict_now(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (N, 10) for images (N, 28, 28), synchronously."""
        return np.asarray(self._forward(images[..., np.newaxis].astype(np.float32)))

    async def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (N, 10) for images (N, 28, 28), computed with the others queued this turn."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._queue:
            # Requests that reach this point before the callback runs join the same batch.
            loop.call_soon(self._run_batch)
        self._queue.append((images, future))
        return await future

    def _run_batch(self) -> None:
        batch, self._queue = self._queue, []
        try:
            probabilities = self.predict_now(np.concatenate([images for images, _ in batch]))
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request, which fails with it
            for _, future in batch:
                if not future.cancelled():
                    future.set_exception(exc)
            return
        start = 0
        for images, future in batch:
            if not future.cancelled():
                future.set_result(probabilities[start : start + len(images)])
            start += len(images)


# ---------------------------------------------------------------------------- reading requests


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the request is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the request is over the {limit:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def _image_bytes(request: Request, limit: int) -> bytes:
    """The uploaded image: the ``file`` field of a multipart form, or base64 in JSON ``{"image": ...}``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("multipart/form-data", "application/json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"expected multipart/form-data with a 'file' field or application/json with an 'image' "
            f"field, got {content_type or 'no Content-Type'}",
        )
    body = await _read_body(request, limit)
    if content_type == "application/json":
        return _from_json(body)
    return await _from_multipart(request, body)


def _from_json(body: bytes) -> bytes:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_request", f"malformed JSON ({exc})") from None
    except RecursionError:
        raise ApiError(400, "bad_request", "malformed JSON (nested too deeply)") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
        raise ApiError(422, "missing_image", 'expected a JSON object {"image": "<base64 PNG or JPEG>"}')
    text = payload["image"]
    if text.startswith("data:"):
        # A data URL, as canvas.toDataURL() makes: data:image/png;base64,....
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise ApiError(400, "bad_request", "the data URL is not base64-encoded")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "bad_request", f"malformed base64 ({exc})") from None


async def _from_multipart(request: Request, body: bytes) -> bytes:
    async def stream():
        yield body

    # Starlette's parser accepts a body cut off before its closing boundary; a cut-off upload is
    # a malformed request, not a form without a file.
    boundary = request.headers.get("content-type", "").partition("boundary=")[2].split(";")[0].strip('" ')
    if boundary and b"--" + boundary.encode("latin-1") + b"--" not in body:
        raise ApiError(400, "bad_request", "malformed multipart form (no closing boundary)")

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=10).parse()
    except MultiPartException as exc:
        raise ApiError(400, "bad_request", f"malformed multipart form ({exc.message})") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "missing_image", "the form has no 'file' field holding an image file")
        declared = (upload.content_type or "").lower()
        if declared and not declared.startswith(_IMAGE_PART_TYPES):
            raise ApiError(415, "unsupported_media_type", f"the uploaded file is {declared}, not an image")
        return await upload.read()
    finally:
        await form.close()


# ---------------------------------------------------------------------------- the answers


class Reading(BaseModel):
    """The model's answer for one digit."""

    digit: int = Field(description="the most probable digit, 0-9 (a guess when not_a_digit is true)")
    confidence: float = Field(description="calibrated probability that the digit is right")
    low_confidence: bool = Field(description=f"confidence below {LOW_CONFIDENCE}: the answer may be wrong")
    not_a_digit: bool = Field(
        description="true when the image is not a digit at all (a letter, a scribble, an object): "
        "the confidence is below the model's threshold, fitted on validation digits"
    )
    probabilities: list[float] = Field(description="calibrated probabilities of the digits 0 to 9")
    processed: list[list[int]] = Field(description="the 28x28 image the model saw, grey levels 0-255")


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str


class DigitAnswer(Reading):
    """``POST /api/predict``."""

    image: ImageInfo
    timing: dict[str, float] = Field(description="read, preprocess, inference and total milliseconds")


class Box(BaseModel):
    x: int
    y: int
    width: int
    height: int


class Mark(Reading):
    box: Box = Field(description="the mark's box in the uploaded image's pixels")


class NumberAnswer(BaseModel):
    """``POST /api/predict-number``."""

    number: str = Field(description="the digits read, left to right; marks that are not digits are left out")
    not_a_number: bool = Field(description="no mark in the image looks like a digit")
    confidence: float = Field(
        description="the chance that the whole number is right: the product of the digits' confidences"
    )
    low_confidence: bool
    digits: list[Mark] = Field(description="every mark found, left to right, digits and not")
    image: ImageInfo
    timing: dict[str, float]


# ---------------------------------------------------------------------------- the app


def _pixels(image: np.ndarray) -> list[list[int]]:
    """The 28x28 model input as rows of grey levels 0-255 (exact: the input is quantised to bytes)."""
    return np.round(image * 255).astype(np.uint8).tolist()


def _model_info(classifier, path: Path) -> dict:
    metrics_file = path.parent / "metrics.json" if path.is_file() else path / "metrics.json"
    metrics = read_json(metrics_file) if metrics_file.is_file() else {}
    return {
        "name": classifier.name,
        "file": classifier.path.name,
        "test_accuracy": metrics.get("test_accuracy"),
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
    }


_IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"image": {"type": "string", "description": "base64 PNG/JPEG, or a data: URL"}},
                "required": ["image"],
            }
        },
    },
}
_ERRORS = {
    status: {
        "description": text,
        "content": {"application/json": {"example": {"error": code, "detail": "…"}}},
    }
    for status, code, text in [
        (400, "bad_request", "malformed JSON, base64 or multipart body"),
        (413, "too_large", "request over the upload limit, or an image with too many pixels"),
        (415, "unsupported_media_type", "not multipart or JSON, or the uploaded file is not an image"),
        (422, "no_digit", "no usable image, or no digit in it (see the error code)"),
    ]
}


def create_app(
    model_path: str | os.PathLike | None = None,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
):
    """The FastAPI application serving one model (see ``resolve_model_path`` for the default)."""
    from digits import __version__
    from digits.models import load_classifier

    path = resolve_model_path(model_path)
    classifier = load_classifier(path)
    predictor = BatchingPredictor(classifier)
    for size in (1, 2, 8):  # trace the graph and set up its kernels before the first request
        predictor.predict_now(np.zeros((size, 28, 28), dtype=np.float32))
    info = _model_info(classifier, path)
    started = time.monotonic()

    app = FastAPI(
        title="digits",
        version=__version__,
        description="Read handwritten digits from drawings, photos and scans with an MNIST model.",
        docs_url=None,
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "detail": exc.detail}, exc.status_code, headers=exc.headers)

    big_decodes = anyio.CapacityLimiter(_BIG_DECODES)

    async def decoded(request: Request, prepare):
        """Read and decode the upload, then ``prepare`` its grayscale pixels: (image, prepared), ms."""
        start = time.perf_counter()
        data = await _image_bytes(request, max_upload_bytes)
        read = time.perf_counter()

        def work(data: bytes):
            image = decode_image(data)
            return image, prepare(image.gray)

        try:
            if len(data) <= _INLINE_BYTES and peek_pixels(data) <= _INLINE_PIXELS:
                result = work(data)
            else:
                result = await anyio.to_thread.run_sync(work, data, limiter=big_decodes)
        except ImageError as exc:
            status = 413 if exc.code == "too_large" else 422
            raise ApiError(status, exc.code, str(exc)) from None
        return result, {"read_ms": (read - start) * 1e3, "preprocess_ms": (time.perf_counter() - read) * 1e3}

    def timing(times: dict, inference_start: float, start: float) -> dict:
        end = time.perf_counter()
        times["inference_ms"] = (end - inference_start) * 1e3
        times["total_ms"] = (end - start) * 1e3
        return {key: round(value, 3) for key, value in times.items()}

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        rows = "".join(
            f"<li><code>{method.upper()} {route}</code> {op.get('summary', '')}</li>"
            for route, methods in app.openapi()["paths"].items()
            for method, op in methods.items()
        )
        return HTMLResponse(
            f"<!doctype html><title>digits API</title><h1>digits API</h1><ul>{rows}</ul>"
            '<p>The full OpenAPI description: <a href="/openapi.json">/openapi.json</a>.</p>'
        )

    @app.get("/api/health", summary="Liveness: the server is up and the model loaded")
    async def health():
        return {
            "status": "ok",
            "model": classifier.name,
            "uptime_s": round(time.monotonic() - started, 1),
            "pid": os.getpid(),  # which worker process answered (digits serve --workers N)
        }

    @app.get("/api/model", summary="The model being served: name, test accuracy, input spec")
    async def model():
        return {**info, "max_upload_bytes": max_upload_bytes, "max_pixels": MAX_PIXELS}

    reject_below = not_a_digit_below(classifier)

    @app.post(
        "/api/predict",
        summary="Read one digit from an image",
        openapi_extra={"requestBody": _IMAGE_BODY},
        responses={200: {"model": DigitAnswer}, **_ERRORS},
    )
    async def predict(request: Request):
        """Read the digit in an uploaded image (multipart ``file``, or JSON ``{"image": base64}``).

        Returns the digit, its calibrated confidence, a ``low_confidence`` flag, ``not_a_digit`` (the
        image does not look like a digit at all: a letter, a drawing, an object), the ten
        probabilities, the 28x28 image the model saw (``processed``, grey levels 0-255) and timings.
        """
        start = time.perf_counter()
        (image, processed), times = await decoded(request, normalise)
        inference_start = time.perf_counter()
        row = (await predictor.predict(processed[np.newaxis]))[0]
        return JSONResponse(
            {
                **reading(row, reject_below),
                "processed": _pixels(processed),
                "image": {"width": image.width, "height": image.height, "format": image.format},
                "timing": timing(times, inference_start, start),
            }
        )

    @app.post(
        "/api/predict-number",
        summary="Read a multi-digit number from an image",
        openapi_extra={"requestBody": _IMAGE_BODY},
        responses={200: {"model": NumberAnswer}, **_ERRORS},
    )
    async def predict_number(request: Request):
        """Read a number written left to right: each mark (or each part of a wide mark where
        neighbours touch) is classified as one digit.

        Returns ``number`` (a string of the marks that are digits), ``not_a_number`` (no mark is a
        digit), ``confidence`` (the product of the digits': the chance that all are right), a
        ``low_confidence`` flag and, for each mark, its box in the original image's pixels, its
        reading (``not_a_digit`` for a stray mark, left out of ``number``) and the 28x28 image the
        model saw.
        """
        start = time.perf_counter()
        (image, candidates), times = await decoded(request, segment_number)
        inference_start = time.perf_counter()
        rows = await predictor.predict(number_reader.candidate_images(candidates))
        marks = []
        for crop, row in number_reader.choose(candidates, rows):
            x, y, w, h = (round(v * image.scale) for v in crop.box)
            marks.append(
                {
                    **reading(row, reject_below),
                    "box": {"x": x, "y": y, "width": w, "height": h},
                    "processed": _pixels(crop.image),
                }
            )
        digits = [m for m in marks if not m["not_a_digit"]]
        # The chance that every digit is right: a number is read right only if all of them are.
        confidence = round(float(np.prod([m["confidence"] for m in digits or marks])), 6)
        return JSONResponse(
            {
                "number": "".join(str(d["digit"]) for d in digits),
                "not_a_number": not digits,
                "confidence": confidence,
                "low_confidence": confidence < LOW_CONFIDENCE,
                "digits": marks,
                "image": {"width": image.width, "height": image.height, "format": image.format},
                "timing": timing(times, inference_start, start),
            }
        )

    return app


def serve(
    model_path: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    access_log: bool = False,
    workers: int = 1,
) -> None:
    """Run the app with uvicorn until interrupted, in ``workers`` processes (each with the model)."""
    import uvicorn

    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    if max_upload_bytes < 1:
        raise ValueError(f"the upload limit must be positive, got {max_upload_bytes} bytes")
    settings = {
        "model_path": str(resolve_model_path(model_path)),  # fail here, before any worker starts
        "max_upload_bytes": max_upload_bytes,
    }
    options = dict(host=host, port=port, access_log=access_log, log_level="info")
    _check_port_free(host, port)  # before the model loads, and workers sharing a port would not fail
    print(
        f"serving {settings['model_path']} on http://{host}:{port}/ once {_workers(workers)} loaded it"
        "  (API: /api/predict, /docs; Ctrl-C to stop)",
        flush=True,
    )
    if workers == 1:
        uvicorn.run(_app_from_settings(settings), **options)
    elif hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux"):
        _run_reuse_port_workers(workers, settings, options)
    else:
        # Worker processes import the app by name and read their settings from the environment.
        os.environ[_SETTINGS_ENV] = json.dumps(settings)
        uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=workers, **options)


_SETTINGS_ENV = "DIGITS_SERVE_SETTINGS"


def _app_from_settings(settings: dict):
    """The app of one server process, from the settings ``serve`` checked."""
    limit_tensorflow_threads(1)
    return create_app(settings["model_path"], max_upload_bytes=settings["max_upload_bytes"])


def app_from_environment():
    """The app of one ``serve(workers=N)`` worker process, configured by ``serve`` through the environment."""
    return _app_from_settings(json.loads(os.environ[_SETTINGS_ENV]))


def _socket_for(host: str) -> socket.socket:
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)


def _workers(count: int) -> str:
    return "the worker has" if count == 1 else f"the {count} workers have"


def _check_port_free(host: str, port: int) -> None:
    """Fail with a clear message if the address is taken (shared SO_REUSEPORT binds would not fail)."""
    with _socket_for(host) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # lingering closed connections are fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DigitsError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _run_reuse_port_workers(workers: int, settings: dict, options: dict) -> None:
    """One listening socket per worker process, bound with SO_REUSEPORT.

    uvicorn's own workers share one socket, and whichever process wakes first accepts every waiting
    connection: with keep-alive clients one worker ends up with most of them. With a socket each, the
    kernel spreads connections across the workers.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    # Stopped with SIGTERM (kill, a service manager): leave through the cleanup below, workers included.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no TensorFlow state forked
    errors = context.SimpleQueue()  # why a worker could not start: every worker fails alike, say it once
    processes = [
        context.Process(target=_reuse_port_worker, args=(settings, options, errors)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        wait([process.sentinel for process in processes])  # until one stops: then stop them all
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches the workers too; they shut down on their own
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
    if not errors.empty():
        raise DigitsError(errors.get())
    failed = [process.exitcode for process in processes if process.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        raise DigitsError(f"a server worker stopped with exit code {failed[0]}; see its messages above")


def _reuse_port_worker(settings: dict, options: dict, errors) -> None:
    import uvicorn

    try:
        app = _app_from_settings(settings)
    except (DigitsError, FileNotFoundError, ValueError) as exc:  # for the parent to report, not a traceback
        errors.put(str(exc))
        sys.exit(2)
    host, port = options["host"], options["port"]
    sock = _socket_for(host)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, **options))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
