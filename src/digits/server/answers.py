"""The API's typed answers and errors, as the OpenAPI schema describes them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from digits.inference import LOW_CONFIDENCE


class ApiError(Exception):
    """A request the API refuses: an HTTP status, a short machine-readable code and a message."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class Reading(BaseModel):
    """The model's answer for one digit."""

    digit: int = Field(description="the most probable digit, 0-9 (a guess when not_a_digit is true)")
    confidence: float = Field(description="calibrated probability that the digit is right")
    low_confidence: bool = Field(description=f"confidence below {LOW_CONFIDENCE}: the answer may be wrong")
    not_a_digit: bool = Field(
        description="true when the image is not a digit at all (a letter, a scribble, an object): "
        "the confidence is below the model's threshold, fitted on validation digits, or the "
        "input traces more ink than any digit does (a scribble)"
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
        " and of each mark's chance of being segmented right (one digit, not two or half of one)"
    )
    low_confidence: bool
    digits: list[Mark] = Field(description="every mark found, left to right, digits and not")
    image: ImageInfo
    timing: dict[str, float]


IMAGE_BODY = {
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
ERRORS = {
    status: {
        "description": text,
        "content": {"application/json": {"example": {"error": code, "detail": "…"}}},
    }
    for status, code, text in [
        (400, "bad_request", "malformed JSON, base64 or multipart body"),
        (408, "timeout", "the request body did not arrive in time"),
        (413, "too_large", "request over the upload limit, or an image with too many pixels"),
        (415, "unsupported_media_type", "not multipart or JSON, or the uploaded file is not an image"),
        (422, "no_digit", "no usable image, or no digit in it (see the error code)"),
    ]
}
