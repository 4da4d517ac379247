"""The one JSON error shape and the msgspec JSON response, below both :mod:`comfytavern.auth` and
:mod:`comfytavern.http` (which re-exports them), so neither has to import the other.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

__all__ = ["ApiError", "ErrorBody", "error_response", "json_response"]

_encoder = msgspec.json.Encoder()


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """The one error shape every route answers with."""

    error: str
    details: Any = None


class ApiError(Exception):
    """An error with an HTTP status, rendered as ``{"error": message, "details"?: ...}``."""

    def __init__(
        self,
        status: int,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(_encoder.encode(content), status, headers, media_type="application/json")


def error_response(status: int, message: str, details: Any = None, headers: dict[str, str] | None = None) -> Response:
    return json_response(ErrorBody(message, details), status, headers)
