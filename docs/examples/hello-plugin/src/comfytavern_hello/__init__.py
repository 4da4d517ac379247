"""Example plugin: ``GET /api/hello`` answers with a greeting prepared by the plugin's lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from comfytavern import ServiceKey, ServiceUse, current_principal, hookimpl, json_response, provides, route


class HelloSettings(msgspec.Struct, forbid_unknown_fields=True):
    """``plugins.settings.hello`` in config.json."""

    greeting: str = "你好"


class HelloResponse(msgspec.Struct):
    message: str
    served: int


class HelloState(msgspec.Struct):
    greeting: str
    served: int = 0


#: A typed service key: mypy checks every provide/require of it.
HELLO: ServiceKey[HelloState] = ServiceKey("hello", "the greeting and how often it was served")


@hookimpl
def register_services() -> list[ServiceUse]:
    return [provides(HELLO)]   # shown by `comfytavern plugins`


@hookimpl
def lifespan(kernel: Any) -> contextlib.AbstractAsyncContextManager[None]:
    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[None]:
        settings = kernel.plugin_settings("hello", HelloSettings)
        state = HelloState(settings.greeting)
        kernel.services.provide(HELLO, state)
        try:
            yield
        finally:
            kernel.services.withdraw(HELLO, state)

    return run()


@hookimpl
def register_routes(kernel: Any) -> list[Any]:
    async def hello(request: Any) -> Any:
        state = kernel.services.require(HELLO)
        state.served += 1
        user = current_principal(request)
        return json_response(HelloResponse(f"{state.greeting}, {user.username}", state.served))

    return [route("/api/hello", hello, summary="Greet the caller", response=HelloResponse, tags=["examples"])]
