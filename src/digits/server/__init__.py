"""The web app and JSON API: draw or upload a digit and have it read.

``create_app`` (app.py) builds a FastAPI application around one trained model from two routers
(routes.py: the pages and the JSON API); ``serve`` (workers.py) runs it with uvicorn in one or more
processes. uploads.py reads and decodes request bodies, answers.py holds the typed answers and
batching.py runs the model for all the requests waiting.

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

from digits.server.app import create_app
from digits.server.workers import serve

__all__ = ["create_app", "serve"]
