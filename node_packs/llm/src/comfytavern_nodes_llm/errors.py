"""Errors of the LLM client, with messages a person can act on.

The engine turns any exception a node raises into ``NODE_ERROR`` with ``str(exc)`` as the
message, so every message here says what failed, where, and what to do. Provider error bodies
are never forwarded unfiltered: some echo part of the API key, so they go through
:func:`redact` and are shortened.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "LlmConfigError",
    "LlmError",
    "LlmHttpError",
    "LlmStreamError",
    "LlmTimeoutError",
    "LlmConnectionError",
    "UnsafeBaseUrl",
    "http_error",
    "redact",
]

MAX_DETAIL_CHARS = 400

# Key-like tokens (``sk-...``, ``sk-proj-...``, ``Bearer ...``), including partly starred echoes.
_KEY_PATTERNS = (
    re.compile(r"\b(?:sk|pk|rk|ak|key)-[A-Za-z0-9*_\-]{4,}", re.IGNORECASE),
    re.compile(r"Bearer\s+[A-Za-z0-9._~+/*\-]+=*", re.IGNORECASE),
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret and key-like token replaced, cut to a readable length."""
    out = text
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "[redacted]")
    for pattern in _KEY_PATTERNS:
        out = pattern.sub("[redacted]", out)
    out = " ".join(out.split())
    if len(out) > MAX_DETAIL_CHARS:
        out = out[: MAX_DETAIL_CHARS - 1] + "…"
    return out


class LlmError(Exception):
    """Base class: the request to the LLM endpoint failed. ``str()`` is the user-facing message."""

    retryable: bool = False


class LlmConfigError(LlmError, ValueError):
    """The node's settings are unusable (bad URL, missing model, env keys not allowed...)."""


class UnsafeBaseUrl(LlmConfigError):
    """The base URL points at an address this server refuses to call (SSRF guard)."""


class LlmConnectionError(LlmError):
    """No connection could be made, or it broke before the first token."""

    retryable = True


class LlmTimeoutError(LlmError):
    """The endpoint stayed silent longer than the configured timeout."""

    retryable = True


class LlmStreamError(LlmError):
    """The response was not the expected JSON / event stream, or it ended early."""


class LlmHttpError(LlmError):
    """The endpoint answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.code = code
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status in (408, 409, 429) or self.status >= 500


def _error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """``(message, type, code)`` from an OpenAI-style ``{"error": {...}}`` body (or variants)."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, str):
            return err, None, None
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or err.get("msg")
            code = err.get("code")
            kind = err.get("type")
            return (
                str(message) if message is not None else None,
                str(kind) if kind is not None else None,
                str(code) if code is not None else None,
            )
    return None, None, None


_ADVICE = {
    400: "the endpoint refused the request; check the model name and the parameters",
    401: "the endpoint rejected the API key; set a key on the APISettings node or store a "
    "credential for the service name it uses",
    403: "the API key is not allowed to use this model or endpoint",
    404: "model or endpoint not found; check the model name and that the base URL ends with "
    "the API version (e.g. /v1)",
    408: "the endpoint timed out handling the request",
    409: "the endpoint reported a conflict; try again",
    413: "the request is too large for the endpoint (too many messages or a big image)",
    422: "the endpoint could not process the request parameters",
    429: "rate limit or quota exceeded at the endpoint; wait and try again, or check the "
    "account's quota",
}


def http_error(
    status: int,
    body: Any,
    *,
    where: str,
    secrets: Iterable[str | None] = (),
    retry_after: float | None = None,
    attempts: int = 1,
) -> LlmHttpError:
    """Map an HTTP error response to a clear :class:`LlmHttpError`."""
    message, kind, code = _error_fields(body)
    if message is None and isinstance(body, str) and body.strip():
        message = body
    advice = _ADVICE.get(status) or (
        "the LLM server failed (server error)" if status >= 500 else "the request failed"
    )
    text = f"LLM endpoint {where} answered HTTP {status}: {advice}"
    if message:
        text += f". The endpoint said: {redact(message, secrets)}"
    if code:
        text += f" (code {redact(code, secrets)})"
    if attempts > 1:
        text += f" [after {attempts} attempts]"
    return LlmHttpError(text, status=status, type=kind, code=code, retry_after=retry_after)
