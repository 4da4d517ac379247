"""OpenAPI 3.1 from the app's routes.

Every route built with :func:`comfytavern.http.route` carries a :class:`~comfytavern.http.RouteDoc`
(summary, tags, access rule, msgspec body/query/response types); that is the whole route
description mechanism, for the kernel and plugins alike. Schemas come from
``msgspec.json.schema_components`` (JSON Schema 2020-12, which OpenAPI 3.1 uses as is), so the
document always matches what the server really decodes and encodes.

Plain Starlette routes without a ``doc`` are listed too (tag ``undocumented``), WebSocket routes
as a ``GET`` answering ``101``, and mounted apps as ``{prefix}/{path}``, so nothing served is
invisible.
"""

from __future__ import annotations

import http
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from comfytavern.http import ErrorBody, RouteDoc

__all__ = ["OPENAPI_VERSION", "Endpoint", "build_openapi", "collect_endpoints", "openapi_path"]

log = logging.getLogger("comfytavern.openapi")

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{name}"
_PARAM = re.compile(r"\{([^}:]+)(?::([^}]*))?\}")
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

#: Schemas for Starlette path convertors.
_CONVERTOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "str": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    "path": {"type": "string"},
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
}


@dataclass(frozen=True)
class Endpoint:
    """One thing the app serves: a documented or plain HTTP route, a WebSocket, or a mount."""

    path: str
    kind: str  # "http" | "websocket" | "mount"
    methods: tuple[str, ...]
    name: str
    doc: RouteDoc | None


def openapi_path(path: str) -> tuple[str, list[tuple[str, str]]]:
    """Starlette path → OpenAPI path template plus ``(name, convertor)`` for each parameter."""
    params: list[tuple[str, str]] = []

    def replace(match: re.Match[str]) -> str:
        params.append((match.group(1), match.group(2) or "str"))
        return "{" + match.group(1) + "}"

    return _PARAM.sub(replace, path) or "/", params


def collect_endpoints(routes: Sequence[BaseRoute], prefix: str = "") -> list[Endpoint]:
    """Flatten the route tree (mounts with sub-routes are entered) into endpoints."""
    out: list[Endpoint] = []
    for item in routes:
        doc = getattr(item, "doc", None)
        doc = doc if isinstance(doc, RouteDoc) else None
        path = prefix + str(getattr(item, "path", ""))
        if isinstance(item, Route):
            methods = tuple(sorted(item.methods or {"GET"}, key=_method_key))
            out.append(Endpoint(path or "/", "http", methods, item.name, doc))
        elif isinstance(item, WebSocketRoute):
            out.append(Endpoint(path or "/", "websocket", ("GET",), item.name, doc))
        elif isinstance(item, Mount):
            children = item.routes
            if children and doc is None:
                out.extend(collect_endpoints(children, path))
            else:
                out.append(Endpoint(path.rstrip("/") + "/{path:path}", "mount", ("GET",), item.name or "mount", doc))
    return out


def _method_key(method: str) -> int:
    return _METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER)


class _Schemas:
    """Collects msgspec types and turns them into schemas plus shared components, once."""

    def __init__(self) -> None:
        self._types: list[Any] = []
        self._index: dict[int, int] = {}
        self.schemas: list[dict[str, Any]] = []
        self.components: dict[str, Any] = {}

    def add(self, type_: Any) -> int:
        key = id(type_)
        if key not in self._index:
            self._index[key] = len(self._types)
            self._types.append(type_)
        return self._index[key]

    def build(self) -> None:
        try:
            schemas, components = msgspec.json.schema_components(self._types, ref_template=REF_TEMPLATE)
            self.schemas = list(schemas)
            self.components = dict(components)
            return
        except Exception as exc:  # noqa: BLE001 - fall back to one type at a time
            log.warning("OpenAPI: schema generation failed for the whole set (%s); retrying per type", exc)
        self.schemas = []
        for type_ in self._types:
            try:
                (schema,), components = msgspec.json.schema_components([type_], ref_template=REF_TEMPLATE)
            except Exception as exc:  # noqa: BLE001
                log.warning("OpenAPI: no schema for %r: %s", type_, exc)
                schema, components = {"description": f"schema unavailable: {exc}"}, {}
            self.schemas.append(schema)
            self.components.update(components)

    def get(self, index: int) -> dict[str, Any]:
        return self.schemas[index]


def _status_text(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Response"


def _operation_id(method: str, path: str, used: set[str], explicit: str | None) -> str:
    base = explicit or (method.lower() + "_" + (re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"))
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}_{n}", n + 1
    used.add(candidate)
    return candidate


def _error_content(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"application/json": {"schema": schema or {"$ref": REF_TEMPLATE.format(name="ErrorBody")}}}


def build_openapi(
    routes: Sequence[BaseRoute],
    *,
    title: str = "ComfyTavern Server",
    version: str = "0",
    description: str = "",
    credentials_optional: bool = False,
    session_cookie: str = "ct_session",
    tag_descriptions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes`` (usually ``app.routes``).

    ``credentials_optional`` (the ``local`` auth mode) adds an empty security requirement to
    protected operations: they work without credentials because everybody is the local admin.
    """
    endpoints = collect_endpoints(routes)
    schemas = _Schemas()
    error_index = schemas.add(ErrorBody)
    wanted: list[tuple[Endpoint, dict[str, int]]] = []
    for endpoint in endpoints:
        refs: dict[str, int] = {}
        doc = endpoint.doc
        if doc is not None:
            for field_name in ("body", "response", "query"):
                type_ = getattr(doc, field_name)
                if type_ is not None:
                    refs[field_name] = schemas.add(type_)
            for media_type, type_ in doc.body_alternatives.items():
                refs[f"body:{media_type}"] = schemas.add(type_)
            for media_type, type_ in doc.response_alternatives.items():
                refs[f"response:{media_type}"] = schemas.add(type_)
            if doc.error is not None:
                refs["error"] = schemas.add(doc.error)
        wanted.append((endpoint, refs))
    schemas.build()
    schemas.components.setdefault("ErrorBody", schemas.get(error_index))

    paths: dict[str, dict[str, Any]] = {}
    used_ids: set[str] = set()
    tags_seen: list[str] = []
    for endpoint, refs in wanted:
        template, params = openapi_path(endpoint.path)
        item = paths.setdefault(template, {})
        methods = [m for m in endpoint.methods if not (m == "HEAD" and "GET" in endpoint.methods)]
        for method in methods:
            key = method.lower()
            if key in item:
                continue  # first route wins, as in the router
            op = _operation(endpoint, method, template, params, refs, schemas, used_ids, credentials_optional)
            item[key] = op
            for tag in op.get("tags", ()):
                if tag not in tags_seen:
                    tags_seen.append(tag)

    descriptions = tag_descriptions or {}
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A service API key (`ctsk_...`) created under /api/users/me/service-keys.",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": session_cookie,
                    "description": "The session cookie set by the login route (password and multi-user modes).",
                },
            },
        },
        "tags": [{"name": t, **({"description": descriptions[t]} if t in descriptions else {})} for t in tags_seen],
    }
    return document


def _operation(
    endpoint: Endpoint,
    method: str,
    template: str,
    params: list[tuple[str, str]],
    refs: dict[str, int],
    schemas: _Schemas,
    used_ids: set[str],
    credentials_optional: bool,
) -> dict[str, Any]:
    doc = endpoint.doc
    op: dict[str, Any] = {}
    if doc is None:
        op["tags"] = ["websocket"] if endpoint.kind == "websocket" else ["undocumented"]
        op["summary"] = endpoint.name.replace("_", " ")
        op["description"] = "This route does not describe itself (it was not built with `comfytavern.http.route`)."
    else:
        op["tags"] = list(doc.tags) or (["websocket"] if endpoint.kind == "websocket" else ["other"])
        if doc.summary:
            op["summary"] = doc.summary
        if doc.description:
            op["description"] = doc.description
    op["operationId"] = _operation_id(method, template, used_ids, doc.operation_id if doc else None)

    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": dict(_CONVERTOR_SCHEMAS.get(conv, {"type": "string"}))}
        for name, conv in params
    ]
    if "query" in refs:
        parameters.extend(_query_parameters(schemas.get(refs["query"]), schemas.components))
    if parameters:
        op["parameters"] = parameters

    responses: dict[str, Any] = {}
    if endpoint.kind == "websocket":
        responses["101"] = {"description": "Switching Protocols: connect with a WebSocket client (ws:// or wss://)."}
        responses["404"] = {"description": "A plain HTTP request (not a WebSocket upgrade) does not match."}
        op["x-websocket"] = True
    elif doc is None:
        responses["default"] = {"description": "Undocumented response."}
    else:
        main: dict[str, Any] = {"description": doc.responses.get(doc.status) or _status_text(doc.status)}
        if "response" in refs:
            main["content"] = {doc.content_type: {"schema": schemas.get(refs["response"])}}
        elif doc.status != 204 and doc.content_type != "application/json":
            main["content"] = {doc.content_type: {"schema": {"type": "string"}}}
        for media_type in doc.response_alternatives:
            main.setdefault("content", {})[media_type] = {"schema": schemas.get(refs[f"response:{media_type}"])}
        responses[str(doc.status)] = main
        error_content = _error_content(schemas.get(refs["error"]) if "error" in refs else None)
        for code, text in sorted(doc.responses.items()):
            if code == doc.status:
                continue
            responses[str(code)] = {"description": text, **({"content": error_content} if code >= 400 else {})}
        standard: list[tuple[int, str]] = []
        if "body" in refs:
            standard += [
                (400, "Malformed request body"),
                (413, "Request body too large"),
                (415, "Unsupported media type (the body is not one of the documented types)"),
                (422, "Validation failed"),
            ]
        if params:
            # Ids are checked before use: control characters, `..`, path separators or reserved
            # names are refused with 400 rather than looked up.
            standard += [(400, "Invalid path parameter"), (404, "Not found")]
        if doc.auth != "public":
            standard.append((401, "Authentication required"))
            standard.append((403, "Administrator rights or an API key scope are missing" if doc.auth == "admin" or doc.scope else "Forbidden"))
        combined: dict[str, list[str]] = {}
        for code, text in standard:
            combined.setdefault(str(code), []).append(text)
        for code_text, texts in combined.items():
            responses.setdefault(code_text, {"description": "; ".join(texts), "content": error_content})
        op["x-auth"] = doc.auth
        if doc.scope:
            op["x-scope"] = f"{doc.scope}:{'read' if method in ('GET', 'HEAD') else 'write'}"
        if doc.auth != "public":
            security: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"sessionCookie": []}]
            if credentials_optional:
                security.append({})
            op["security"] = security
            op["description"] = (op.get("description", "") + "\n\n" + _access_text(doc, method)).strip()
    op["responses"] = dict(sorted(responses.items()))

    if doc is not None and "body" in refs and method not in ("GET", "HEAD"):
        bodies = {doc.body_content_type: refs["body"]}
        bodies.update({media: refs[f"body:{media}"] for media in doc.body_alternatives})
        op["requestBody"] = {
            "required": True,
            "content": {
                media: {
                    "schema": _request_schema(media, schemas.get(index), schemas.components),
                    **({"example": doc.body_examples[media]} if media in doc.body_examples else {}),
                }
                for media, index in bodies.items()
            },
        }
    return op


def _is_bytes(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "string" and schema.get("contentEncoding") == "base64"


def _binary(schema: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in schema.items() if k != "contentEncoding"}
    out["format"] = "binary"
    return out


def _request_schema(media_type: str, schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A request body's schema for ``media_type``: JSON as generated; for a raw binary body
    (``bytes``) and for the ``bytes`` fields of a multipart form (its file parts) the raw-bytes
    form ``{"type": "string", "format": "binary"}`` instead of JSON's base64 text."""
    if _is_bytes(schema):
        return _binary(schema)
    if media_type != "multipart/form-data":
        return schema
    resolved = _resolve(schema, components)
    properties = resolved.get("properties")
    if not isinstance(properties, dict):
        return schema

    def part(prop: Any) -> Any:
        if _is_bytes(prop):
            return _binary(prop)
        if isinstance(prop, dict) and isinstance(prop.get("anyOf"), list):
            return {**prop, "anyOf": [part(item) for item in prop["anyOf"]]}
        return prop

    return {**resolved, "properties": {name: part(prop) for name, prop in properties.items()}}


def _access_text(doc: RouteDoc, method: str) -> str:
    who = "an administrator" if doc.auth == "admin" else "a signed-in user"
    text = f"**Access:** {who}"
    if doc.scope:
        text += f"; an API key needs the scope `{doc.scope}:{'read' if method in ('GET', 'HEAD') else 'write'}`"
    return text + "."


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return components.get(ref.rsplit("/", 1)[1], {})
    return schema


def _query_parameters(schema: dict[str, Any], components: dict[str, Any]) -> Iterable[dict[str, Any]]:
    resolved = _resolve(schema, components)
    required = set(resolved.get("required", ()))
    for name, prop in (resolved.get("properties") or {}).items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if isinstance(prop, dict) and prop.get("description"):
            param["description"] = prop["description"]
        yield param
