"""Reading an uploaded image: the request body under a size limit, multipart or base64 JSON, decoded.

The body is read here with a running total, so a huge upload is refused once it passes the limit
(Starlette's ``request.body()`` and ``request.form()`` read all of it first), and the multipart parser
then runs on those bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import time

import anyio
from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from digits.images import ImageError, decode_image, peek_pixels
from digits.server.answers import ApiError
from digits.server.memory import return_freed_memory

# Small images are decoded on the event loop (cheaper than a thread hop); big ones in a thread so
# that one large photo does not stall every other request.
_INLINE_BYTES = 128 * 1024
_INLINE_PIXELS = 512 * 512
# Big images decode in at most this many threads per process: a 25-megapixel 16-bit PNG needs a few
# hundred MB while it is converted, and a few KB of such uploads must not add up to all the memory.
BIG_DECODES = 2
_IMAGE_PART_TYPES = ("image/", "application/octet-stream")


#: Seconds a client has to send a request's body, once its headers are in.
BODY_TIMEOUT = 20.0


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the request is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    # A body that stops coming (a slow or stalled client, a Content-Length longer than the body)
    # would hold the connection and the request for good.
    with anyio.move_on_after(BODY_TIMEOUT) as deadline:
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "too_large", f"the request is over the {limit:,}-byte limit")
                chunks.append(chunk)
        except ClientDisconnect:  # gone mid-body: nobody to answer, and nothing for the log
            raise ApiError(400, "bad_request", "the client closed the connection mid-request") from None
    if deadline.cancelled_caught:
        raise ApiError(408, "timeout", f"the request body did not arrive within {BODY_TIMEOUT:g} s")
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


class Decoder:
    """Reads and decodes uploads: small ones on the event loop, big ones a few threads at a time."""

    def __init__(self, max_upload_bytes: int):
        self.max_upload_bytes = max_upload_bytes
        self._big_decodes = anyio.CapacityLimiter(BIG_DECODES)

    async def decoded(self, request: Request, prepare):
        """Read and decode the upload, then ``prepare`` its grayscale pixels: (image, prepared), ms."""
        start = time.perf_counter()
        data = await _image_bytes(request, self.max_upload_bytes)
        read = time.perf_counter()

        def work(data: bytes):
            image = decode_image(data)
            return image, prepare(image.gray)

        def big_work(data: bytes):
            try:
                return work(data)
            finally:
                return_freed_memory()

        try:
            if len(data) <= _INLINE_BYTES and peek_pixels(data) <= _INLINE_PIXELS:
                result = work(data)
            else:
                result = await anyio.to_thread.run_sync(big_work, data, limiter=self._big_decodes)
        except ImageError as exc:
            status = 413 if exc.code == "too_large" else 422
            raise ApiError(status, exc.code, str(exc)) from None
        return result, {"read_ms": (read - start) * 1e3, "preprocess_ms": (time.perf_counter() - read) * 1e3}
