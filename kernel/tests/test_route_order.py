"""Route order: ordinary routes, then ``fallback = True`` catch-alls, then ``fallback = 2`` defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount

from comfytavern import hookimpl, route
from comfytavern.app import create_app
from comfytavern.kernel import Kernel
from comfytavern_testing import client_for, make_config


class Ordered:
    name = "route-order-plugin"

    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def text(request: Request) -> Response:
            return PlainTextResponse(request.url.path.strip("/") or "default")

        def labelled(label: str) -> Any:
            async def app(scope: Any, receive: Any, send: Any) -> None:
                await PlainTextResponse(label)(scope, receive, send)
            return app

        default = route("/", text, auth="public", name="default")
        default.fallback = 2  # type: ignore[attr-defined]
        catch_all = Mount("/", app=labelled("catch-all"))
        catch_all.fallback = True  # type: ignore[attr-defined]
        plain = route("/plain", text, auth="public", name="plain")
        return [default, catch_all, plain]


def test_fallback_ranks(tmp_path: Path) -> None:
    config = make_config(tmp_path, storage={"projects": None, "accounts": None, "runs": None},
                         plugins={"enabled": ["auth-local"]})
    kernel = Kernel(config, plugins=[Ordered()])
    ranks = [getattr(r, "fallback", 0) for r in kernel.plugin_routes()]
    assert ranks[-2:] == [True, 2]  # the catch-all, then the default, whatever the registration order
    assert all(rank in (0, False) for rank in ranks[:-2])
    assert create_app(kernel).routes[-1].name == "default"
    with client_for(kernel) as client:
        assert client.get("/plain").text == "plain"
        assert client.get("/").text == "catch-all"  # the catch-all answers before the later default
        assert client.get("/anything").text == "catch-all"
