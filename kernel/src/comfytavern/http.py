"""HTTP helpers shared by the kernel and every plugin.

- :class:`ApiError` raised anywhere becomes the one JSON error shape ``{"error", "details"?}``.
- :func:`json_response` encodes with msgspec (Structs, dicts, lists).
- :func:`read_json` decodes a body into a Struct with precise 400/415/422 errors;
  :func:`decode_json` is the one JSON parser for client input (HTTP bodies, WebSocket messages),
  with a nesting limit.
- :func:`route` builds a Starlette route that carries its documentation (for OpenAPI) and its
  access rule (auth level and service-key scope), enforced before the endpoint runs.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from comfytavern.auth import PRINCIPAL_SCOPE_KEY, Principal, scope_refusal
from comfytavern.responses import ApiError, ErrorBody, error_response, json_response

__all__ = [
    "MAX_JSON_DEPTH",
    "ApiError",
    "ErrorBody",
    "JsonTooDeep",
    "RouteDoc",
    "error_response",
    "json_response",
    "read_json",
    "read_json_value",
    "route",
    "websocket_route",
    "check_access",
    "decode_json",
    "require_json_content_type",
    "validation_details",
]

T = TypeVar("T")

log = logging.getLogger("comfytavern.http")

#: Deepest nesting of arrays/objects accepted in client JSON. msgspec (like every recursive
#: parser) fails with ``RecursionError`` somewhere below ~1000 levels depending on the stack in
#: use, and a document that barely decodes in one place can fail again when it is read back
#: elsewhere; a fixed limit far below that makes the answer the same everywhere (400).
MAX_JSON_DEPTH = 128





class JsonTooDeep(msgspec.DecodeError):
    """Client JSON nested deeper than :data:`MAX_JSON_DEPTH` (a ``DecodeError``, so every
    caller that handles malformed JSON handles this too)."""


#: A JSON string (for valid JSON exactly; brackets inside strings do not nest).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_ESCAPED_QUOTE = re.compile(rb'\\"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_BRACKET_STEP = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")  # +1 / -1 as signed bytes


def _nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Do the arrays/objects of the JSON text ``raw`` nest deeper than ``limit``?

    Computed on the bytes before parsing, with C-speed steps only (drop the strings, keep the
    brackets, running sum of +1/-1): a walk over the parsed value costs several times the parse
    itself on adversarial input. Exact for valid JSON; for invalid JSON the parser fails anyway.
    """
    # Escapes first (valid JSON has backslashes only there): only an escaped quote could be
    # taken for a string's end; ``\\`` pairs go first so ``\\"`` keeps its real quote. With no
    # backslash right before a quote anywhere, every quote is real and nothing needs dropping.
    # (The regular expression scans for the backslash, the rare byte; ``in`` stops at every quote.)
    if b"\\" in raw and _ESCAPED_QUOTE.search(raw) is not None:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Quotes and brackets only. Whether a bracket is inside a string depends only on the parity
    # of the quotes before it, which dropping adjacent pairs (strings without brackets: nearly
    # all of them) keeps; what is left to split is a few strings that do contain brackets.
    structure = raw.translate(None, _NOT_STRUCTURE)
    if structure.count(b"[") + structure.count(b"{") <= limit:  # fewer openings than the limit: most bodies
        return False
    structure = structure.replace(b'""', b"")
    brackets = b"".join(structure.split(b'"')[::2]) if b'"' in structure else structure
    if len(brackets) <= limit:
        return False
    return max(itertools.accumulate(memoryview(brackets.translate(_BRACKET_STEP)).cast("b"))) > limit


def decode_json(data: bytes | str, *, what: str = "request body") -> Any:
    """Parse client JSON; raises ``msgspec.DecodeError`` (:class:`JsonTooDeep` past the limit).

    Deep nesting is refused before parsing, whatever the depth (a ``RecursionError`` from the
    parser is caught too), and logged as a warning: it is either a broken client or a probe.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    too_deep = _nesting_exceeds(raw, MAX_JSON_DEPTH)
    if not too_deep:
        try:
            return msgspec.json.decode(raw)
        except RecursionError:
            too_deep = True
    log.warning("refused a %s nested deeper than %d levels (%d bytes)", what, MAX_JSON_DEPTH, len(raw))
    raise JsonTooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


def require_json_content_type(request: Request) -> None:
    """415 unless the body is declared as JSON (``application/json`` or ``application/*+json``).

    A body without ``Content-Type`` is taken as JSON (scripts). Other types are refused: a
    ``text/plain`` or form body is what a cross-site page can send without a CORS preflight.
    """
    header = request.headers.get("content-type")
    if header is None:
        return
    media = header.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise ApiError(
        415,
        "unsupported media type; send Content-Type: application/json",
        {"contentType": header[:200]},
    )


async def read_json_value(request: Request) -> Any:
    """The request body as decoded JSON: 415 for another media type, 400 for an empty, malformed
    or too deeply nested body."""
    require_json_content_type(request)
    body = await request.body()
    if not body.strip():
        raise ApiError(400, "request body is empty; expected JSON")
    try:
        return decode_json(body)
    except JsonTooDeep as exc:
        raise ApiError(400, "JSON nested too deeply", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed JSON", str(exc)) from None


async def read_json(request: Request, type_: type[T]) -> T:
    """Decode the request body into ``type_``: 400 for malformed JSON, 415 for a body that is
    not JSON, 422 with the field path."""
    raw = await read_json_value(request)
    try:
        return msgspec.convert(raw, type_)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "validation failed", validation_details(exc)) from None


def validation_details(exc: msgspec.ValidationError | msgspec.DecodeError) -> list[dict[str, str]]:
    """msgspec's message split into ``[{"path": "$.field", "message": ...}]``."""
    message = str(exc)
    path = "$"
    if " - at `" in message:
        message, _, rest = message.rpartition(" - at `")
        path = rest.rstrip("`")
    return [{"path": path, "message": message}]


AuthLevel = Literal["public", "user", "admin"]


@dataclass(frozen=True)
class RouteDoc:
    """Documentation and access rule attached to a route.

    ``scope`` names the service-key scope group (``projects``, ``runs``...); GET/HEAD need
    ``<group>:read``, other methods ``<group>:write``. ``body``/``response`` are msgspec types used
    for the OpenAPI document.
    """

    summary: str = ""
    description: str = ""
    tags: Sequence[str] = ()
    auth: AuthLevel = "user"
    scope: str | None = None
    body: Any = None
    response: Any = None
    responses: dict[int, str] = field(default_factory=dict)
    status: int = 200
    content_type: str = "application/json"
    #: A msgspec Struct whose fields document the query parameters (for OpenAPI).
    query: Any = None
    #: Media type of the request body (``multipart/form-data`` for uploads: ``body`` then
    #: describes the form fields, a ``bytes`` field being a file part).
    body_content_type: str = "application/json"
    #: Other media types the body may have, each with its msgspec type (``bytes`` for a raw
    #: binary body such as ``image/png``).
    body_alternatives: dict[str, Any] = field(default_factory=dict)
    #: An example body per media type (shown in ``/docs``; API fuzzers start from it).
    body_examples: dict[str, Any] = field(default_factory=dict)
    #: Explicit OpenAPI ``operationId`` (default: derived from the method and path).
    operation_id: str | None = None
    #: Other media types the success response may have, each with its msgspec type (``str`` for
    #: text such as an HTML page or a server-sent event stream).
    response_alternatives: dict[str, Any] = field(default_factory=dict)
    #: msgspec type of this route's error bodies when they are not the server's ``ErrorBody``
    #: (the ``/v1`` routes answer in OpenAI's error shape).
    error: Any = None


def check_access(principal: Principal | None, doc: RouteDoc, method: str) -> None:
    """Raise 401/403 unless ``principal`` may use a route documented by ``doc``."""
    if doc.auth == "public":
        return
    if principal is None:
        raise ApiError(401, "authentication required")
    if doc.auth == "admin" and not principal.is_admin:
        raise ApiError(403, "administrator rights required")
    if doc.scope is not None:
        refusal = scope_refusal(principal, f"{doc.scope}:{'read' if method in ('GET', 'HEAD') else 'write'}")
        if refusal is not None:
            raise ApiError(403, refusal)


def route(
    path: str,
    endpoint: Callable[[Request], Awaitable[Response]],
    *,
    methods: Sequence[str] = ("GET",),
    name: str | None = None,
    doc: RouteDoc | None = None,
    **doc_fields: Any,
) -> Route:
    """A Starlette ``Route`` whose endpoint is guarded by its :class:`RouteDoc` access rule."""
    route_doc = doc or RouteDoc(**doc_fields)

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        check_access(request.scope.get(PRINCIPAL_SCOPE_KEY), route_doc, request.method)
        return await endpoint(request)

    r = Route(path, guarded, methods=list(methods), name=name or endpoint.__name__)
    r.doc = route_doc  # type: ignore[attr-defined]
    return r


def websocket_route(
    path: str,
    endpoint: Callable[[WebSocket], Awaitable[None]],
    *,
    name: str | None = None,
    doc: RouteDoc | None = None,
    **doc_fields: Any,
) -> WebSocketRoute:
    """A documented WebSocket route; the endpoint enforces its own access (it must accept first)."""
    r = WebSocketRoute(path, endpoint, name=name or endpoint.__name__)
    r.doc = doc or RouteDoc(**doc_fields)  # type: ignore[attr-defined]
    return r
