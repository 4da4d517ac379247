"""HTTP helpers shared by the kernel and every plugin.

- :class:`ApiError` raised anywhere becomes the one JSON error shape ``{"error", "details"?}``.
- :func:`json_response` encodes with msgspec (Structs, dicts, lists).
- :func:`read_json` decodes a body into a Struct with precise 400/422 errors.
- :func:`route` builds a Starlette route that carries its documentation (for OpenAPI) and its
  access rule (auth level and service-key scope), enforced before the endpoint runs.
"""

from __future__ import annotations

import functools
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
    "ApiError",
    "ErrorBody",
    "RouteDoc",
    "json_response",
    "read_json",
    "route",
    "websocket_route",
    "check_access",
    "validation_details",
]

T = TypeVar("T")





async def read_json(request: Request, type_: type[T]) -> T:
    """Decode the request body into ``type_``: 400 for malformed JSON, 422 with the field path."""
    body = await request.body()
    if not body.strip():
        raise ApiError(400, "request body is empty; expected JSON")
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed JSON", str(exc)) from None
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
    #: describes the form fields).
    body_content_type: str = "application/json"
    #: Explicit OpenAPI ``operationId`` (default: derived from the method and path).
    operation_id: str | None = None


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
