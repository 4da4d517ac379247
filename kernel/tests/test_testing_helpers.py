"""The test helpers plugin authors rely on behave as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comfytavern import hookimpl, json_response, optional_principal, route
from comfytavern_testing import HEADER_AUTH_MODE, NO_STORAGE, client_for, header_auth_plugin, make_kernel


class WhoAmI:
    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def whoami(request: Any) -> Any:
            p = optional_principal(request)
            return json_response(None if p is None else {"id": p.id, "admin": p.is_admin, "via": p.via, "scopes": sorted(p.scopes)})

        return [route("/api/whoami", whoami, auth="public")]


def test_header_auth_plugin(tmp_path: Path) -> None:
    plugin = header_auth_plugin(query_param="user", admins=("root",), scopes_header="x-scopes")
    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[plugin, WhoAmI()], auth={"mode": HEADER_AUTH_MODE})
    with client_for(kernel) as client:
        assert client.get("/api/whoami").json() is None
        assert client.get("/api/whoami", headers={"x-user": "ann"}).json() == {"id": "ann", "admin": False, "via": "session", "scopes": ["*"]}
        assert client.get("/api/whoami?user=root").json()["admin"] is True
        key = client.get("/api/whoami", headers={"x-user": "bob", "x-scopes": "runs:read,nodes:read"}).json()
        assert key == {"id": "bob", "admin": False, "via": "key", "scopes": ["nodes:read", "runs:read"]}
