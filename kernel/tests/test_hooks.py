"""One test per hook specification (a meta-test below enforces it), with in-process plugins."""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.requests import HTTPConnection

from comfytavern import (
    AuthMode,
    CliCommand,
    HttpMiddleware,
    HubEvent,
    Output,
    Principal,
    ServiceKey,
    ServiceUse,
    StorageBackend,
    hookimpl,
    hookspecs,
    json_response,
    node,
    provides,
    requires,
    route,
)
from comfytavern.cli import main as cli_main
from comfytavern_testing import NO_STORAGE, client_for, header_auth_plugin, make_kernel

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"


def hook_names() -> list[str]:
    return sorted(
        name for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "comfytavern_spec")
    )


# -- meta-tests ------------------------------------------------------------------------------


def test_every_hook_has_a_test() -> None:
    tests = {name for name in globals() if name.startswith("test_hook_")}
    missing = [name for name in hook_names() if f"test_hook_{name}" not in tests]
    assert not missing, f"hooks without a test_hook_<name>: {missing}"


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in hook_names():
        fn = getattr(hookspecs, name)
        signature = f"{name}{inspect.signature(fn)}".replace("'", "")
        assert f"### `{name}`" in text, f"docs/hooks.md has no section for {name}"
        assert signature in text, f"docs/hooks.md does not show the signature {signature}"


# -- one test per hook -----------------------------------------------------------------------


def test_hook_register_routes(tmp_path: Path) -> None:
    class Plugin:
        @hookimpl
        def register_routes(self, kernel: Any) -> list[Any]:
            async def echo(request: Any) -> Any:
                return json_response({"user": request.scope["comfytavern.principal"].id})

            return [route("/api/echo-user", echo, summary="Echo the user", scope="nodes")]

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Plugin()])
    with client_for(kernel) as client:
        assert client.get("/api/echo-user").json() == {"user": "default_user"}


def test_hook_register_auth_modes(tmp_path: Path) -> None:
    class HeaderAuth:
        name = "header"

        async def authenticate(self, conn: HTTPConnection) -> Principal | None:
            user = conn.headers.get("x-user")
            return Principal(id=user, username=user, via="session") if user else None

        def routes(self) -> list[Any]:
            async def whoami(request: Any) -> Any:
                return json_response({"mode": "header"})

            return [route("/api/header-mode", whoami, auth="public")]

    class Plugin:
        @hookimpl
        def register_auth_modes(self, kernel: Any) -> list[AuthMode]:
            return [AuthMode("header", lambda kernel, settings: HeaderAuth())]

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Plugin()], auth={"mode": "header"})
    with client_for(kernel) as client:
        assert client.get("/kernel/plugins").status_code == 401
        assert client.get("/kernel/plugins", headers={"x-user": "ann"}).status_code == 200
        assert client.get("/api/header-mode").json() == {"mode": "header"}


def test_hook_register_storage_backends(tmp_path: Path) -> None:
    events: list[str] = []

    class MemoryProjects:
        def __init__(self, settings: Any) -> None:
            self.settings = settings

        async def open(self) -> None:
            events.append("open")

        async def close(self) -> None:
            events.append("close")

    class Plugin:
        @hookimpl
        def register_storage_backends(self, kernel: Any) -> list[StorageBackend]:
            return [StorageBackend("memory", "projects", lambda kernel, settings: MemoryProjects(settings))]

    kernel = make_kernel(
        tmp_path,
        plugins=[Plugin()],
        storage={**NO_STORAGE, "projects": "memory", "settings": {"memory": {"size": 3}}},
    )
    assert kernel.storage.projects.settings == {"size": 3}
    with client_for(kernel):
        assert events == ["open"]
    assert events == ["open", "close"]


def test_hook_register_nodes(tmp_path: Path) -> None:
    @node(type="Answer", category="test", display_name="Answer", outputs={"n": Output("INTEGER")})
    def answer(inputs: dict, ctx: Any) -> dict:
        return {"n": 42}

    class Pack:
        NAMESPACE = "demo"

        @hookimpl
        def register_nodes(self) -> list[Any]:
            return [answer]

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, node_packs=[Pack()])
    registered = kernel.registry.current.get("demo:Answer")
    assert registered is not None
    assert registered.execute({}, None) == {"n": 42}


def test_hook_register_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from comfytavern import kernel as kernel_module

    class Plugin:
        @hookimpl
        def register_commands(self, kernel: Any) -> list[CliCommand]:
            def configure(parser: Any) -> None:
                parser.add_argument("who")

            def run(kernel: Any, args: Any) -> int:
                print(f"hello {args.who}")
                return 3

            return [CliCommand("greet", "Say hello", run=run, configure=configure)]

    original_init = kernel_module.Kernel.__init__

    def patched_init(self: Any, config: Any, **kwargs: Any) -> None:
        kwargs["plugins"] = [Plugin()]
        original_init(self, config, **kwargs)

    monkeypatch.setattr(kernel_module.Kernel, "__init__", patched_init)
    config = tmp_path / "config.json"
    config.write_text('{"storage": {"projects": null, "accounts": null, "runs": null}}', encoding="utf-8")
    assert cli_main(["greet", "--config", str(config), "world"]) == 3
    assert capsys.readouterr().out.strip() == "hello world"


def test_hook_lifespan(tmp_path: Path) -> None:
    order: list[str] = []

    def plugin(tag: str) -> Any:
        class Plugin:
            name = tag

            @hookimpl
            def lifespan(self, kernel: Any) -> Any:
                @contextlib.asynccontextmanager
                async def run() -> AsyncIterator[None]:
                    order.append(f"start {tag}")
                    yield
                    order.append(f"stop {tag}")

                return run()

        return Plugin()

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[plugin("a"), plugin("b")])
    with client_for(kernel):
        assert order == ["start a", "start b"]
    assert order == ["start a", "start b", "stop b", "stop a"]


GREETING: ServiceKey[str] = ServiceKey("greeting", "a test service")


def test_hook_register_services(tmp_path: Path) -> None:
    class Provider:
        name = "greeter"

        @hookimpl
        def register_services(self) -> list[ServiceUse]:
            return [provides(GREETING)]

        @hookimpl
        def lifespan(self, kernel: Any) -> Any:
            @contextlib.asynccontextmanager
            async def run() -> AsyncIterator[None]:
                kernel.services.provide(GREETING, "hi")
                yield
                kernel.services.withdraw(GREETING, "hi")

            return run()

    class User:
        name = "listener"

        @hookimpl
        def register_services(self) -> list[ServiceUse]:
            return [requires(GREETING)]

        @hookimpl
        def register_routes(self, kernel: Any) -> list[Any]:
            async def hear(request: Any) -> Any:
                return json_response({"heard": kernel.services.require(GREETING)})

            return [route("/api/hear", hear, summary="Hear the greeting", auth="public")]

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Provider(), User()])
    with client_for(kernel) as client:
        assert client.get("/api/hear").json() == {"heard": "hi"}
        body = client.get("/kernel/plugins").json()
    rows = {row["name"]: row for row in body["plugins"]}
    assert rows["greeter"]["provides"] == ["greeting"] and rows["greeter"]["uses"] == []
    assert rows["listener"]["uses"] == ["greeting"]
    table = {row["service"]: row for row in body["services"]}
    assert table["greeting"] == {
        "service": "greeting",
        "description": "a test service",
        "providers": ["greeter"],
        "users": ["listener"],
        "requiredBy": ["listener"],
    }
    assert table["scheduler"]["providers"] == ["kernel"]
    assert GREETING not in kernel.services  # withdrawn at shutdown

    from comfytavern.kernel import StartupError

    with pytest.raises(StartupError, match="service 'greeting' is required by listener but no installed plugin provides it"):
        make_kernel(tmp_path, storage=NO_STORAGE, plugins=[User()])


def test_hook_register_scope_groups(tmp_path: Path) -> None:
    class Plugin:
        name = "scoped"

        @hookimpl
        def register_scope_groups(self) -> list[str]:
            return ["hello", "server"]

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Plugin()])
    assert kernel.scope_groups["hello"] == ["scoped"]
    assert kernel.scope_groups["server"][0] == "kernel" and "scoped" in kernel.scope_groups["server"]
    assert kernel.scope_groups["runs"] == ["executions"]
    bare = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[header_auth_plugin()], load_entrypoints=False, auth={"mode": "test-header"})
    assert bare.scope_groups == {"server": ["kernel"]}


def test_lifespan_time_limit(tmp_path: Path) -> None:
    from comfytavern.kernel import StartupError

    class Slow:
        @hookimpl
        def lifespan(self, kernel: Any) -> Any:
            @contextlib.asynccontextmanager
            async def run() -> AsyncIterator[None]:
                await anyio.sleep(10)
                yield

            return run()

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Slow()], server={"lifespan_timeout_seconds": 0.1})
    with pytest.raises(StartupError, match="did not start within 0.1 s"):
        with client_for(kernel):
            pass


def test_hook_detect_editor_dialect(tmp_path: Path) -> None:
    class Recognises:
        @hookimpl
        def detect_editor_dialect(self, kernel: Any) -> str | None:
            return "seed-2025-06"

    class Unknown:
        @hookimpl
        def detect_editor_dialect(self, kernel: Any) -> str | None:
            return None

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Unknown(), Recognises()])
    answers = [(info.name, found) for info, found in kernel.call_each("detect_editor_dialect", kernel=kernel)]
    # Each answer attributed to its plugin, in load order (static-frontend serves nothing here).
    assert [a for a in answers if a[0] != "static-frontend"] == [("Unknown", None), ("Recognises", "seed-2025-06")]


def test_hook_register_middleware(tmp_path: Path) -> None:
    entered: list[str] = []

    def recorder(label: str) -> Any:
        class Recorder:
            def __init__(self, app: Any, *, tag: str) -> None:
                self.app, self.tag = app, tag

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] == "http":
                    entered.append(f"{label}:{self.tag}")
                await self.app(scope, receive, send)

        return Recorder

    class Outer:
        @hookimpl
        def register_middleware(self, kernel: Any) -> list[HttpMiddleware]:
            return [HttpMiddleware(recorder("outer"), {"tag": "a"}, layer="outer")]

    class Inner:
        @hookimpl
        def register_middleware(self, kernel: Any) -> list[HttpMiddleware]:
            return [
                HttpMiddleware(recorder("inner"), {"tag": "b"}),
                HttpMiddleware(recorder("outer"), {"tag": "c"}, layer="outer"),
            ]

    class Broken:
        @hookimpl
        def register_middleware(self, kernel: Any) -> list[Any]:
            return ["not a middleware"]

    class WrongOptions:
        @hookimpl
        def register_middleware(self, kernel: Any) -> list[HttpMiddleware]:
            return [HttpMiddleware(recorder("outer"), {"colour": "red"}, layer="outer")]  # takes ``tag``

    plugins = [Outer(), Inner(), Broken(), WrongOptions()]
    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=plugins)
    with client_for(kernel) as client:
        assert client.get("/healthz").status_code == 200
        assert entered == ["outer:a", "outer:c", "inner:b"]  # load order within a layer
        entered.clear()
        # Refused by the host check (before auth): only the outer layer sees it.
        assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 400
        assert entered == ["outer:a", "outer:c"]
    status = {row["name"]: row["status"] for row in kernel.plugin_rows()}
    assert (status["Outer"], status["Inner"], status["Broken"]) == ("loaded", "loaded", "error")
    assert status["WrongOptions"] == "error"  # refused at start-up, not on every request


def test_hook_on_execution_event(tmp_path: Path) -> None:
    seen: list[HubEvent] = []

    class Observer:
        @hookimpl
        def on_execution_event(self, event: HubEvent) -> None:
            seen.append(event)
            if event.type == "BOOM":
                raise RuntimeError("observer failure is isolated")

    class AsyncObserver:
        name = "async-observer"

        @hookimpl
        async def on_execution_event(self, event: HubEvent) -> None:
            await anyio.sleep(0)
            seen.append(HubEvent("async:" + event.type, event.payload))

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Observer(), AsyncObserver()])
    with client_for(kernel) as client:
        kernel.hub.emit("BOOM", {})
        kernel.hub.emit("EXECUTION_STATUS_UPDATE", {"status": "running"}, prompt_id="p1")

        def done() -> bool:
            return len(seen) >= 4

        for _ in range(200):
            if done():
                break
            client.get("/healthz")
        types = [event.type for event in seen]
    assert types.count("EXECUTION_STATUS_UPDATE") == 1 and "async:EXECUTION_STATUS_UPDATE" in types
    assert "BOOM" in types and "async:BOOM" in types


def test_registration_hook_that_raises_is_isolated(tmp_path: Path) -> None:
    class Faulty:
        name = "faulty"

        @hookimpl
        def register_routes(self, kernel: Any) -> list[Any]:
            raise ValueError("cannot build routes")

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Faulty()])
    with client_for(kernel) as client:
        rows = {row["name"]: row for row in client.get("/kernel/plugins").json()["plugins"]}
    assert rows["faulty"]["status"] == "error"
    assert re.search(r"register_routes raised: ValueError: cannot build routes", rows["faulty"]["error"])


def test_lifespan_may_keep_a_task_group_open(tmp_path: Path) -> None:
    """A plugin's lifespan can run background tasks for the whole life of the server."""
    ticks: list[int] = []

    class Background:
        @hookimpl
        def lifespan(self, kernel: Any) -> Any:
            @contextlib.asynccontextmanager
            async def run() -> AsyncIterator[None]:
                async def tick() -> None:
                    while True:
                        ticks.append(1)
                        await anyio.sleep(0.001)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(tick)
                    yield
                    tg.cancel_scope.cancel()

            return run()

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Background()])
    with client_for(kernel) as client:
        for _ in range(50):
            client.get("/healthz")
            if len(ticks) > 3:
                break
        assert len(ticks) > 3
    stopped = len(ticks)
    assert stopped == len(ticks)


def test_lifespan_failure_at_start_stops_startup(tmp_path: Path) -> None:
    class Failing:
        @hookimpl
        def lifespan(self, kernel: Any) -> Any:
            @contextlib.asynccontextmanager
            async def run() -> AsyncIterator[None]:
                raise RuntimeError("cannot connect to the thing")
                yield

            return run()

    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Failing()])
    with pytest.raises(RuntimeError, match="cannot connect to the thing"):
        with client_for(kernel):
            pass
