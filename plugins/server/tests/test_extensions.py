"""``GET /api/plugins``: the later editor's every-page request gets the real (empty) list."""

from __future__ import annotations

from pathlib import Path

import msgspec

from comfytavern_server_routes.extensions import ExtensionFrontend, ExtensionInfo
from comfytavern_testing import client_for, make_kernel


def test_the_list_is_empty_public_and_json(tmp_path: Path) -> None:
    for auth in ({"mode": "local"}, {"mode": "multi-user"}):  # no login needed, as in the original
        with client_for(make_kernel(tmp_path / auth["mode"], auth=auth)) as client:
            response = client.get("/api/plugins")
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.json() == []
            assert client.post("/api/plugins", json={}).status_code == 405


def test_the_entry_shape_is_the_later_backends() -> None:
    info = ExtensionInfo(
        name="demo", display_name="Demo", version="1.0.0", is_enabled=True,
        frontend=ExtensionFrontend(entry_url="/plugins/demo/index.js", style_urls=["/plugins/demo/a.css"], web_root_dir="web"),
    )  # fmt: skip
    assert msgspec.json.decode(msgspec.json.encode(info)) == {
        "name": "demo", "displayName": "Demo", "version": "1.0.0", "isEnabled": True,
        "frontend": {"entryUrl": "/plugins/demo/index.js", "styleUrls": ["/plugins/demo/a.css"], "webRootDir": "web"},
    }  # fmt: skip


def test_it_is_in_the_openapi_document(tmp_path: Path) -> None:
    with client_for(make_kernel(tmp_path)) as client:
        spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/api/plugins"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
