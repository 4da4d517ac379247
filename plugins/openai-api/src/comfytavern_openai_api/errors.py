"""Errors in OpenAI's shape, which OpenAI SDKs and chat clients parse and show to the user.

The rest of the server answers ``{"error": "<message>"}``; under ``/v1`` every error this
plugin raises is ``{"error": {"message", "type", "param", "code"}}`` with the status OpenAI
would use, so a client shows "model not found" rather than a generic failure.
"""

from __future__ import annotations

import msgspec
from starlette.responses import Response

from comfytavern.logs import redact
from comfytavern_openai_api.wire import ErrorDetail, ErrorEnvelope

__all__ = ["OpenAIError", "error_event", "error_response"]

_encoder = msgspec.json.Encoder()


class OpenAIError(Exception):
    """An error answered in OpenAI's shape. Messages are redacted of secrets before sending."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(ErrorDetail(redact(self.message), self.type, self.code, self.param))

    # -- the cases a route answers ------------------------------------------------------------
    @classmethod
    def bad_request(cls, message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
        return cls(400, message, "invalid_request_error", code, param)

    @classmethod
    def model_not_found(cls, model: str) -> OpenAIError:
        return cls(
            404,
            f"The model '{model}' does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
            "model",
        )

    @classmethod
    def server(cls, message: str, code: str, status: int = 500) -> OpenAIError:
        return cls(status, message, "server_error", code)


def error_response(exc: OpenAIError) -> Response:
    return Response(_encoder.encode(exc.envelope()), exc.status, media_type="application/json")


def error_event(exc: OpenAIError) -> bytes:
    """The error as an event of a stream already under way (what OpenAI sends mid-stream)."""
    return b"data: " + _encoder.encode(exc.envelope()) + b"\n\n"
