"""comfytavern.revocation: what a revocation covers, announcements that survive bad listeners, and
re-authentication that insists on the same credential."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import HTTPConnection

from comfytavern.auth import Principal
from comfytavern.revocation import Revocation, Revocations, reauthenticate

SESSION = Principal(id="u1", username="a", via="session", session_id="h1")
KEY = Principal(id="u1", username="a", via="key", scopes=frozenset({"runs:*"}), key_id="k1")
LOCAL = Principal(id="u1", username="a", via="local")
OTHER = Principal(id="u2", username="b", via="session", session_id="h2")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("revocation", "covered"),
    [
        (Revocation.key("k1", "u1"), {"KEY"}),
        (Revocation.key("k1"), {"KEY"}),
        (Revocation.key("k2"), set()),
        (Revocation.key("k1", "u2"), set()),
        (Revocation.session("h1"), {"SESSION"}),
        (Revocation.session("h2", "u2"), {"OTHER"}),
        (Revocation.sessions("u1"), {"SESSION"}),
        (Revocation.user("u1"), {"SESSION", "KEY", "LOCAL"}),
        (Revocation.user("u3"), set()),
        (Revocation(kind="sessions"), set()),  # no user: covers nobody rather than everybody
        (Revocation(kind="user"), set()),
    ],
)
def test_what_a_revocation_covers(revocation: Revocation, covered: set[str]) -> None:
    principals = {"SESSION": SESSION, "KEY": KEY, "LOCAL": LOCAL, "OTHER": OTHER}
    assert {name for name, p in principals.items() if revocation.covers(p)} == covered


@pytest.mark.anyio
async def test_announce_reaches_sync_and_async_listeners_past_a_failing_one() -> None:
    board = Revocations()
    heard: list[tuple[str, Revocation, str | None]] = []

    def broken(revocation: Revocation, origin: str | None) -> None:
        raise RuntimeError("listener bug")

    async def later(revocation: Revocation, origin: str | None) -> None:
        heard.append(("async", revocation, origin))

    board.listen(broken)
    stop = board.listen(lambda r, o: heard.append(("sync", r, o)))
    board.listen(later)
    await board.announce(Revocation.key("k1"), origin="B:1")
    assert heard == [("sync", Revocation.key("k1"), "B:1"), ("async", Revocation.key("k1"), "B:1")]
    stop()
    stop()  # idempotent
    assert board.listener_count == 2
    await board.announce(Revocation.user("u1"))
    assert [h[0] for h in heard] == ["sync", "async", "async"]


class FixedBackend:
    name = "fixed"

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def authenticate(self, conn: HTTPConnection) -> Any:
        return self.answer

    def routes(self) -> list[Any]:
        return []


@pytest.mark.anyio
async def test_reauthenticate_needs_the_same_user_through_the_same_credential() -> None:
    conn = HTTPConnection({"type": "websocket", "headers": [], "path": "/ws", "query_string": b""})
    promoted = Principal(id="u1", username="renamed", is_admin=True, via="session", session_id="h1")
    assert await reauthenticate(FixedBackend(promoted), conn, SESSION) == promoted  # fresher details
    assert await reauthenticate(FixedBackend(None), conn, SESSION) is None
    assert await reauthenticate(FixedBackend(False), conn, SESSION) is None
    assert await reauthenticate(FixedBackend(OTHER), conn, SESSION) is None
    other_session = Principal(id="u1", username="a", via="session", session_id="h9")
    assert await reauthenticate(FixedBackend(other_session), conn, SESSION) is None
    other_key = Principal(id="u1", username="a", via="key", key_id="k2")
    assert await reauthenticate(FixedBackend(other_key), conn, KEY) is None
    assert await reauthenticate(None, conn, SESSION) is None
