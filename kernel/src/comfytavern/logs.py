"""Logging: readable lines on a terminal, JSON lines otherwise; request and run ids; redaction.

- Every record gets ``request_id`` and ``run_id`` from context variables (set by
  :class:`RequestContextMiddleware` for each HTTP/WebSocket connection, and by the engine with
  :func:`run_context` around each run), so a log line can be tied to the request or run that
  caused it without passing ids around.
- :class:`RedactingFilter` scrubs secrets (service keys ``ctsk_...``, provider keys ``sk-...``,
  ``Authorization`` values, bearer tokens, passwords, credentials, URL passwords) from every record
  before any handler writes it, because a leaked log file must not leak keys.

The two formatters are written here (about 40 lines) on purpose: the standard ``logging`` module
does the work, and a JSON-logging library (python-json-logger, structlog) would add a dependency
for the ``json.dumps`` of one dict, while the parts that matter (ids from context variables,
redaction before every handler) would still be ours.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Iterator
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from comfytavern.config import Config

__all__ = [
    "REDACTED",
    "ContextFilter",
    "JsonFormatter",
    "RedactingFilter",
    "RequestContextMiddleware",
    "TextFormatter",
    "configure_logging",
    "current_request_id",
    "current_run_id",
    "is_sensitive_key",
    "redact",
    "redact_value",
    "request_id_var",
    "run_context",
    "run_id_var",
]

REDACTED = "[REDACTED]"

#: The id of the HTTP request / WebSocket connection being served (``X-Request-Id``).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("ct_request_id", default=None)
#: The id (``promptId``) of the run being executed.
run_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("ct_run_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()


def current_run_id() -> str | None:
    return run_id_var.get()


@contextlib.contextmanager
def run_context(run_id: str) -> Iterator[None]:
    """Tag every log record emitted inside (and in tasks started inside) with ``run_id``.

    The engine wraps each run with it; anyio tasks copy the context when they start, so nodes
    running in child tasks or worker threads inherit the id.
    """
    token = run_id_var.set(run_id)
    try:
        yield
    finally:
        run_id_var.reset(token)


# -- redaction ------------------------------------------------------------------------------

_SECRET_WORDS = (
    r"password|passwd|pwd|passphrase|secret|client[_-]?secret|api[_-]?key|apikey|x-api-key|"
    r"access[_-]?token|refresh[_-]?token|auth[_-]?token|session[_-]?token|id[_-]?token|token|"
    r"credentials?|master[_-]?key|private[_-]?key|cookie|set-cookie|session[_-]?id"
)

_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    # ComfyTavern service keys and provider keys (OpenAI, Anthropic, ... all use ``sk-``).
    (re.compile(r"\bctsk_[A-Za-z0-9_\-]+"), "ctsk_" + REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{6,}"), "sk-" + REDACTED),
    # Authorization headers in any common rendering (``Authorization: Bearer x``, ``'authorization': 'x'``).
    (
        re.compile(
            r"""(?i)(\b(?:proxy-)?authorization\b["']?\s*[:=]\s*["']?)((?:bearer|basic|token|digest)\s+)?[^\s"',;}\]]+"""
        ),
        lambda m: f"{m.group(1)}{m.group(2) or ''}{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/\-]+=*"), lambda m: f"{m.group(1)}{REDACTED}"),
    # key=value / "key": "value" for secret-looking keys.
    (
        re.compile(
            r"""(?i)((?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_-])*(?:""" + _SECRET_WORDS + r""")["']?\s*[:=]\s*)"""
            r"""("[^"]*"|'[^']*'|[^\s,;&}\]]+)"""
        ),
        lambda m: m.group(1) + _quoted_redaction(m.group(2)),
    ),
    # Passwords inside URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^@/\s]+@"), lambda m: f"{m.group(1)}{REDACTED}@"),
]

_SENSITIVE_KEY = re.compile(
    r"(?i)(password|passwd|passphrase|secret|credential|authorization|cookie|api[_-]?key|apikey|"
    r"private[_-]?key|master[_-]?key|session[_-]?id|(^|[_-])token$)"
)


def _quoted_redaction(value: str) -> str:
    if value[:1] in {'"', "'"} and value[-1:] == value[:1] and len(value) >= 2:
        return f"{value[0]}{REDACTED}{value[0]}"
    return REDACTED


def redact(text: str) -> str:
    """``text`` with every secret-looking value replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_sensitive_key(key: str) -> bool:
    """True for mapping keys whose values are secrets (``password``, ``api_key``, ``access_token``...)."""
    return bool(_SENSITIVE_KEY.search(key))


def redact_value(value: Any, depth: int = 0) -> Any:
    """Redact strings, and values under sensitive keys, inside nested dicts/lists/tuples."""
    if depth > 8:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and is_sensitive_key(k) else redact_value(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v, depth + 1) for v in value)
    return value


_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "request_id", "run_id"}
#: Extras some libraries add that only make sense on a colour terminal (uvicorn's ``color_message``).
_DROPPED = {"color_message"}


class RedactingFilter(logging.Filter):
    """Scrubs the message, its arguments, ``extra=`` fields and exception text of every record.

    Attach it to handlers (``configure_logging`` does), so records from every logger, uvicorn's
    included, pass through it. The record is rewritten in place: it is already formatted here, so
    formatters downstream see only redacted text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_ct_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key in _STANDARD or key.startswith("_"):
                continue
            setattr(record, key, REDACTED if is_sensitive_key(key) else redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._ct_redacted = True
        return True


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``run_id`` (``None`` when unset) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "run_id", None) is None:
            record.run_id = run_id_var.get()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "run_id"):
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _DROPPED and not key.startswith("_"):
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [req=... run=...] key=value...`` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tail: list[str] = []
        request_id = getattr(record, "request_id", None)
        run_id = getattr(record, "run_id", None)
        if request_id:
            tail.append(f"req={request_id}")
        if run_id:
            tail.append(f"run={run_id}")
        if not tail:
            return line
        first, sep, rest = line.partition("\n")
        return f"{first} [{' '.join(tail)}]{sep}{rest}"


def configure_logging(config: Config, stream: Any = None) -> logging.Handler:
    """Install one root handler (text or JSON per ``logging.format``) with context and redaction."""
    stream = stream or sys.stderr
    fmt = config.logging.format
    if fmt == "auto":
        fmt = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.logging.level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    return handler


# -- request ids ----------------------------------------------------------------------------

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
#: Requests logged at DEBUG instead of INFO (probes and scrapes would drown everything else).
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

access_log = logging.getLogger("comfytavern.access")


def new_request_id() -> str:
    return secrets.token_hex(8)


class RequestContextMiddleware:
    """Pure ASGI: a request id per connection (the client's ``X-Request-Id`` if well-formed),
    returned in the ``X-Request-Id`` response header, set in :data:`request_id_var` while the
    request runs, and one access-log line per HTTP request (method, path, status, duration)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == REQUEST_ID_HEADER:
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else new_request_id()
        scope["comfytavern.request_id"] = request_id
        token = request_id_var.set(request_id)
        try:
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
                return
            await self._http(scope, receive, send, request_id)
        finally:
            request_id_var.reset(token)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        status = 500
        header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [h for h in message.get("headers", ()) if h[0].lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope.get("path", "")
            level = logging.DEBUG if path in QUIET_PATHS and status < 400 else logging.INFO
            if access_log.isEnabledFor(level):
                duration_ms = round((time.perf_counter() - started) * 1000, 2)
                access_log.log(
                    level,
                    "%s %s %s %.1fms",
                    scope.get("method", "GET"),
                    path,
                    status,
                    duration_ms,
                    extra={
                        "method": scope.get("method", "GET"),
                        "path": path,
                        "status": status,
                        "duration_ms": duration_ms,
                    },
                )
