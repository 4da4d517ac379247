"""App assembly: the one JSON error shape, CORS for the editor, body limits, health routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfytavern import hookimpl, json_response, read_json, route
from comfytavern_testing import NO_STORAGE, client_for, make_kernel

EDITOR = "http://localhost:5573"


class Item(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    count: int = 1


class Routes:
    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def create(request: Any) -> Any:
            item = await read_json(request, Item)
            return json_response(item, status=201)

        async def explode(request: Any) -> Any:
            raise RuntimeError("secret internals /etc/passwd")

        async def admin_only(request: Any) -> Any:
            return json_response({"ok": True})

        return [
            route("/api/items", create, methods=["POST"], body=Item, scope="projects"),
            route("/api/explode", explode, auth="public"),
            route("/api/admin-only", admin_only, auth="admin"),
        ]


@pytest.fixture
def client(tmp_path: Path) -> Any:
    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Routes()], server={"max_body_bytes": 1000})
    with client_for(kernel, raise_server_exceptions=False) as c:
        yield c


def test_health_and_readiness(client: Any) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json()["status"] == "ready"


def test_valid_body(client: Any) -> None:
    r = client.post("/api/items", json={"name": "a"})
    assert r.status_code == 201 and r.json() == {"name": "a", "count": 1}


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"content": b"{nope"}, 400, "malformed JSON"),
        ({"content": b""}, 400, "request body is empty; expected JSON"),
        ({"json": {"name": 3}}, 422, "validation failed"),
        ({"json": {"name": "a", "extra": 1}}, 422, "validation failed"),
        ({"json": ["not", "an", "object"]}, 422, "validation failed"),
    ],
)
def test_bad_bodies(client: Any, kwargs: dict, status: int, error: str) -> None:
    r = client.post("/api/items", headers={"content-type": "application/json"}, **kwargs)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == error


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"],
)
def test_a_body_that_is_not_declared_json_is_a_415(client: Any, content_type: str) -> None:
    r = client.post("/api/items", content=b'{"name": "a"}', headers={"content-type": content_type})
    assert r.status_code == 415
    assert r.json()["error"] == "unsupported media type; send Content-Type: application/json"


@pytest.mark.parametrize("content_type", [None, "application/json", "application/json; charset=utf-8", "application/merge-patch+json"])
def test_json_media_types_and_no_content_type_are_accepted(client: Any, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    r = client.post("/api/items", content=b'{"name": "a"}', headers=headers)
    assert r.status_code == 201, r.text


def test_nesting_limit_of_the_shared_decoder(client: Any) -> None:
    from comfytavern.http import MAX_JSON_DEPTH, JsonTooDeep, decode_json

    assert decode_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    assert decode_json(b'["' + b"[" * 5000 + b'"]') == ["[" * 5000]  # brackets inside strings do not count
    for depth in (MAX_JSON_DEPTH + 1, 999, 100_000):
        with pytest.raises(JsonTooDeep):
            decode_json(b"[" * depth + b"]" * depth)
        with pytest.raises(msgspec.DecodeError):  # callers handling malformed JSON handle this too
            decode_json(b'{"a":' * depth + b"1" + b"}" * depth)
        if depth < 400:  # this app's body limit is 1000 bytes
            r = client.post("/api/items", content=b'{"name": ' + b"[" * depth + b"]" * depth + b"}")
            assert r.status_code == 400 and r.json()["error"] == "JSON nested too deeply"


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\a'), inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(value=_JSON, limit=st.integers(min_value=0, max_value=8))
def test_the_nesting_scan_matches_the_real_depth(value: Any, limit: int) -> None:
    from comfytavern.http import _nesting_exceeds

    raw = msgspec.json.encode(value)
    assert _nesting_exceeds(raw, limit) is (_depth(value) > limit)
    assert _nesting_exceeds(msgspec.json.format(raw, indent=2), limit) is (_depth(value) > limit)


def test_validation_details_name_the_field(client: Any) -> None:
    details = client.post("/api/items", json={"name": 3}).json()["details"]
    assert details == [{"path": "$.name", "message": "Expected `str`, got `int`"}]


def test_not_found_and_method_not_allowed(client: Any) -> None:
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and r.json() == {"error": "no route for GET /api/nothing-here"}
    r = client.delete("/healthz")
    assert r.status_code == 405 and r.json()["error"].startswith("method DELETE is not allowed")


def test_body_too_large_announced_and_streamed(client: Any) -> None:
    r = client.post("/api/items", content=b"x" * 2000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit 1000 bytes" in r.json()["error"]

    def chunks() -> Any:
        for _ in range(5):
            yield b"y" * 400

    r = client.post("/api/items", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_server_error_does_not_leak(client: Any) -> None:
    r = client.get("/api/explode")
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error"}
    assert "passwd" not in r.text and "Traceback" not in r.text


def test_cors_preflight_from_the_editor(client: Any) -> None:
    r = client.options(
        "/api/items",
        headers={
            "Origin": EDITOR,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == EDITOR
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "PUT" in r.headers["access-control-allow-methods"]
    r = client.get("/healthz", headers={"Origin": EDITOR})
    assert r.headers["access-control-allow-origin"] == EDITOR


def test_cors_refuses_other_origins(client: Any) -> None:
    r = client.options("/api/items", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/healthz", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_local_mode_user_is_admin(client: Any) -> None:
    assert client.get("/api/admin-only").json() == {"ok": True}


def test_plugin_listing_route(client: Any) -> None:
    body = client.get("/kernel/plugins").json()
    names = {row["name"] for row in body["plugins"]}
    assert "auth-local" in names
    row = next(r for r in body["plugins"] if r["name"] == "auth-local")
    assert set(row) >= {"name", "kind", "distribution", "version", "status", "error"}
