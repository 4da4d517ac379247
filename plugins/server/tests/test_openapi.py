"""/openapi.json: valid OpenAPI 3.1, every served route listed, RouteDoc types become schemas;
/docs: an offline page whose every asset is served by the server itself."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from openapi_spec_validator import validate
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from comfytavern import hookimpl, json_response, read_json, route, websocket_route
from comfytavern.app import create_app
from comfytavern_server_routes.openapi import build_openapi, collect_endpoints, openapi_path
from comfytavern_testing import client_for


class Tag(msgspec.Struct):
    name: str
    weight: float = 1.0


class ItemIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new item."""

    title: str
    tags: list[Tag] = []
    note: str | None = None


class ItemOut(msgspec.Struct):
    id: int
    title: str
    tags: list[Tag]


class ListQuery(msgspec.Struct):
    limit: int = 10
    search: str | None = None
    owner: str = msgspec.field(default="me")


class DocumentedPlugin:
    """A plugin exercising every kind of route the generator must describe."""

    name = "openapi-test-plugin"

    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def create(request: Request) -> Response:
            item = await read_json(request, ItemIn)
            return json_response(ItemOut(1, item.title, item.tags), status=201)

        async def listing(request: Request) -> Response:
            return json_response([ItemOut(1, "a", [])])

        async def get_one(request: Request) -> Response:
            return json_response(ItemOut(request.path_params["item_id"], "a", []))

        async def plain(request: Request) -> Response:
            return PlainTextResponse("plain")

        async def socket(ws: WebSocket) -> None:
            await ws.accept()
            await ws.close()

        async def inner(request: Request) -> Response:
            return PlainTextResponse("inner")

        return [
            route(
                "/api/test-items",
                create,
                methods=["POST"],
                summary="Create an item",
                body=ItemIn,
                response=ItemOut,
                status=201,
                scope="projects",
                tags=["test"],
            ),
            route("/api/test-items", listing, summary="List items", query=ListQuery, response=list[ItemOut], tags=["test"]),
            route("/api/test-items/{item_id:int}", get_one, summary="One item", response=ItemOut, auth="admin", tags=["test"]),
            Route("/api/test-plain", plain, methods=["GET", "DELETE"]),
            WebSocketRoute("/api/test-socket", socket),
            websocket_route("/api/test-socket-documented", socket, summary="A documented socket", tags=["test"]),
            Mount("/api/test-mounted", routes=[Route("/inner/{key}", inner)]),
            Mount("/api/test-static", app=StaticFiles(directory=".", check_dir=False)),
        ]


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def _all_refs(node: Any) -> set[str]:
    refs: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                refs.add(value)
            else:
                refs |= _all_refs(value)
    elif isinstance(node, list):
        for item in node:
            refs |= _all_refs(item)
    return refs


@pytest.fixture
def spec(make_full_kernel: Any) -> dict[str, Any]:
    kernel = make_full_kernel()
    kernel.register_plugin(DocumentedPlugin())
    with client_for(kernel) as client:
        response = client.get("/openapi.json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        return response.json()


def test_the_document_is_valid_openapi_31(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    validate(spec)
    defined = {f"#/components/schemas/{name}" for name in spec["components"]["schemas"]}
    assert _all_refs(spec["paths"]) <= defined


def test_every_route_of_the_assembled_app_is_listed(make_full_kernel: Any) -> None:
    kernel = make_full_kernel()
    kernel.register_plugin(DocumentedPlugin())
    app = create_app(kernel)
    with client_for(kernel) as client:
        spec = client.get("/openapi.json").json()
    validate(spec)
    endpoints = collect_endpoints(app.routes)
    assert len(endpoints) >= 10
    for endpoint in endpoints:
        template, _ = openapi_path(endpoint.path)
        assert template in spec["paths"], f"{endpoint.path} is missing"
        for method in endpoint.methods:
            if method == "HEAD" and "GET" in endpoint.methods:
                continue
            assert method.lower() in spec["paths"][template], f"{method} {template} is missing"
    # the kernel's own routes and this plugin's are there
    for path in ("/healthz", "/readyz", "/kernel/plugins", "/openapi.json", "/docs", "/metrics", "/api/server/restart"):
        assert path in spec["paths"]
    operation_ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_route_doc_types_become_request_response_and_parameter_schemas(spec: dict[str, Any]) -> None:
    create = spec["paths"]["/api/test-items"]["post"]
    assert create["summary"] == "Create an item"
    assert create["tags"] == ["test"]
    body = _resolve(spec, create["requestBody"]["content"]["application/json"]["schema"])
    assert body["required"] == ["title"]
    assert body["properties"]["tags"]["items"] == {"$ref": "#/components/schemas/Tag"}
    assert body["properties"]["note"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    created = create["responses"]["201"]["content"]["application/json"]["schema"]
    assert _resolve(spec, created)["properties"]["id"] == {"type": "integer"}
    for code in ("400", "401", "403", "413", "422"):
        assert create["responses"][code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
    assert create["x-scope"] == "projects:write"
    assert create["x-auth"] == "user"
    # local mode: credentials are optional, so the empty requirement is listed
    assert {"bearerAuth": []} in create["security"] and {} in create["security"]

    listing = spec["paths"]["/api/test-items"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert params["limit"]["in"] == "query" and params["limit"]["required"] is False
    assert params["limit"]["schema"] == {"type": "integer", "default": 10}
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"

    one = spec["paths"]["/api/test-items/{item_id}"]["get"]
    assert one["parameters"] == [{"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}]
    assert one["x-auth"] == "admin"
    assert "404" in one["responses"]


def test_plain_routes_websockets_and_mounts_are_listed_too(spec: dict[str, Any]) -> None:
    plain = spec["paths"]["/api/test-plain"]
    assert set(plain) == {"get", "delete"}
    assert plain["get"]["tags"] == ["undocumented"]
    assert "default" in plain["get"]["responses"]
    socket = spec["paths"]["/api/test-socket"]["get"]
    assert socket["x-websocket"] is True and "101" in socket["responses"]
    assert socket["tags"] == ["websocket"]
    assert spec["paths"]["/api/test-socket-documented"]["get"]["summary"] == "A documented socket"
    inner = spec["paths"]["/api/test-mounted/inner/{key}"]["get"]
    assert inner["parameters"][0]["name"] == "key"
    assert "get" in spec["paths"]["/api/test-static/{path}"]


def test_protected_operations_need_credentials_outside_local_mode() -> None:
    async def endpoint(request: Request) -> Response:
        return json_response({})

    routes = [
        route("/a", endpoint, auth="user", scope="runs"),
        route("/b", endpoint, methods=["POST"], auth="admin", scope="server"),
        route("/c", endpoint, auth="public"),
    ]
    doc = build_openapi(routes, credentials_optional=False, session_cookie="sid")
    validate(doc)
    assert doc["paths"]["/a"]["get"]["security"] == [{"bearerAuth": []}, {"sessionCookie": []}]
    assert doc["paths"]["/a"]["get"]["x-scope"] == "runs:read"
    assert doc["paths"]["/b"]["post"]["x-scope"] == "server:write"
    assert "security" not in doc["paths"]["/c"]["get"]
    assert "401" not in doc["paths"]["/c"]["get"]["responses"]
    assert doc["components"]["securitySchemes"]["sessionCookie"]["name"] == "sid"


def test_an_unsupported_type_does_not_break_the_document() -> None:
    class NotSerialisable:
        pass

    async def endpoint(request: Request) -> Response:
        return json_response({})

    doc = build_openapi([route("/x", endpoint, response=NotSerialisable), route("/y", endpoint, response=ItemOut)])
    validate(doc)
    assert "schema unavailable" in doc["paths"]["/x"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["description"]
    assert doc["paths"]["/y"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ItemOut"
    }


class UploadForm(msgspec.Struct):
    picture: bytes
    caption: str = ""
    thumbnail: bytes | None = None


def test_uploads_invalid_ids_and_media_types_are_described() -> None:
    async def endpoint(request: Request) -> Response:
        return json_response({})

    routes = [
        route("/up", endpoint, methods=["POST"], body=UploadForm, body_content_type="multipart/form-data",
              body_alternatives={"image/png": bytes, "application/json": dict[str, Any]},
              body_examples={"application/json": {"k": 1}}),
        route("/json/{thing_id}", endpoint, methods=["PUT"], body=ItemIn),
        route("/plain/{thing_id}", endpoint),
    ]
    doc = build_openapi(routes)
    validate(doc)
    upload = doc["paths"]["/up"]["post"]
    content = upload["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "image/png", "application/json"}
    form = content["multipart/form-data"]["schema"]
    assert form["properties"]["picture"] == {"type": "string", "format": "binary"}
    assert form["properties"]["caption"] == {"type": "string", "default": ""}
    assert {"type": "string", "format": "binary"} in form["properties"]["thumbnail"]["anyOf"]
    assert form["required"] == ["picture"]
    assert content["image/png"]["schema"] == {"type": "string", "format": "binary"}
    assert content["application/json"] == {"schema": {"type": "object"}, "example": {"k": 1}}
    assert "415" in upload["responses"]
    put = doc["paths"]["/json/{thing_id}"]["put"]["responses"]
    # a refused id (control characters, "..", reserved names) is a documented 400, like a bad body
    assert put["400"]["description"] == "Malformed request body; Invalid path parameter"
    assert {"404", "413", "415", "422"} <= set(put)
    assert doc["paths"]["/plain/{thing_id}"]["get"]["responses"]["400"]["description"] == "Invalid path parameter"


def test_mode_dependent_and_streamed_answers_have_their_real_schemas(spec: dict[str, Any]) -> None:
    current = spec["paths"]["/api/auth/current"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert current["discriminator"]["propertyName"] == "mode"
    assert set(current["discriminator"]["mapping"]) == {"SingleUser", "MultiUser"}
    events = spec["paths"]["/api/prompt/{prompt_id}/events"]["get"]["responses"]["200"]["content"]
    frame = _resolve(spec, events["text/event-stream"]["schema"])  # OpenAPI 3.1: the schema of one event
    assert frame["required"] == ["event", "data"]
    assert frame["properties"]["data"]["contentMediaType"] == "application/json"
    for path, method in (("/api/characters/import", "post"), ("/api/users/me/avatar", "post")):
        content = spec["paths"][path][method]["requestBody"]["content"]
        assert "multipart/form-data" in content, path


def test_405_lists_every_method_served_at_the_path(spec: dict[str, Any], make_full_kernel: Any) -> None:
    with client_for(make_full_kernel()) as client:
        r = client.request("OPTIONS", "/api/projects")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
        r = client.patch("/api/projects/some-id/workflows/wf")
        assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, HEAD, PUT"
        # a fixed path wins over a template that also matches it, as in OpenAPI
        r = client.request("OPTIONS", "/api/characters/import")
        assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_docs_page_works_offline(kernel: Any) -> None:
    with client_for(kernel) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "http://" not in html and "https://" not in html and "//" not in html.replace("<!doctype", "")
        links = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert set(links) - {"openapi.json"} == {a for a in links if a.startswith("docs/assets/")}
        assets = [a for a in links if a.startswith("docs/assets/")]
        assert "docs/assets/swagger-ui-bundle.js" in assets and "docs/assets/comfytavern-docs.js" in assets
        for asset in assets:
            response = client.get("/" + asset)
            assert response.status_code == 200, asset
            assert int(response.headers["content-length"]) > 0
            assert "max-age" in response.headers["cache-control"]
        init = client.get("/docs/assets/comfytavern-docs.js").text
        assert "validatorUrl: null" in init and "openapi.json" in init
        assert "http" not in init
        bundle = client.get("/docs/assets/swagger-ui-bundle.js")
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert client.get("/docs/assets/../../etc/passwd").status_code == 404
        assert client.get("/docs/assets/index.html").status_code == 404
        missing = client.get("/docs/assets/nothing.js")
        assert missing.status_code == 404 and missing.json() == {"error": "no docs asset named 'nothing.js'"}


def test_swagger_ui_bundle_supports_openapi_31(kernel: Any) -> None:
    """Swagger UI renders 3.1 documents from version 5 on; 4.x refuses them."""
    with client_for(kernel) as client:
        bundle = client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "OpenAPI 3.1" in bundle or "openapi31" in bundle.lower() or "isOAS31" in bundle
