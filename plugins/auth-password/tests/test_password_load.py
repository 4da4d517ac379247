"""``local-password`` under load over real HTTP, with the production Argon2id cost.

Fault/load layer (``-m fault``): a real uvicorn server on loopback (the settings of
``comfytavern serve``), real concurrent clients, and no hashing settings at all, so the
production defaults (64 MiB, 3 passes, 4 lanes) are what is measured.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from comfytavern.storage.accounts import UserChanges
from comfytavern_accounts.passwords import PasswordHasher
from comfytavern_accounts.testing import frozen_password_hashing
from comfytavern_testing import client_for, live_server, make_kernel

pytestmark = pytest.mark.fault

STORAGE = {"projects": None, "accounts": "sqlite", "runs": None}
PASSWORD = "correct horse battery"
#: Generous: a bound that says "answers", not a speed goal (those live in benchmarks/).
ANSWER_WITHIN = 120.0


def make(tmp_path: Path, **settings: Any) -> Any:
    """Only the given settings; everything else (the hashing cost too) is the production default."""
    return make_kernel(tmp_path, storage=STORAGE, auth={"mode": "local-password", "settings": {"local-password": settings}})


async def send(base: str, body: dict[str, Any], answers: list[httpx.Response], source: str | None = None) -> None:
    """One login from its own client (own connection, no shared cookies), from ``source``."""
    transport = httpx.AsyncHTTPTransport(local_address=source) if source else None
    async with httpx.AsyncClient(base_url=base, timeout=ANSWER_WITHIN, transport=transport) as client:
        answers.append(await client.post("/api/auth/login", json=body))


async def post_all(base: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Send every body at once."""
    answers: list[httpx.Response] = []
    with anyio.fail_after(ANSWER_WITHIN):
        async with anyio.create_task_group() as tg:
            for body in bodies:
                tg.start_soon(send, base, body, answers)
    return answers


async def until(answers: list[httpx.Response], count: int, *, within: float = ANSWER_WITHIN / 2) -> None:
    with anyio.fail_after(within):
        while len(answers) < count:
            await anyio.sleep(0.02)


async def set_up(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=ANSWER_WITHIN) as client:
        assert (await client.post("/api/auth/setup", json={"password": PASSWORD})).status_code == 201


@pytest.mark.anyio
async def test_concurrent_correct_logins_with_production_hashing_all_succeed(tmp_path: Path) -> None:
    with live_server(make(tmp_path)) as base:
        await set_up(base)
        answers = await post_all(base, [{"password": PASSWORD}] * 12)
        assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers]
        assert len({a.cookies["ct_session"] for a in answers}) == 12
        # ...and the server is still answering logins afterwards.
        single = await post_all(base, [{"password": PASSWORD}])
        assert single[0].status_code == 200


@pytest.mark.anyio
async def test_parallel_wrong_guesses_never_exceed_the_failure_limit(tmp_path: Path) -> None:
    with live_server(make(tmp_path, login_max_failures=3)) as base:
        await set_up(base)
        answers = await post_all(base, [{"password": f"wrong guess {i}"} for i in range(20)])
        counts = Counter(a.status_code for a in answers)
        assert counts[401] <= 3 and counts[401] + counts[429] == 20, counts
        assert all(int(a.headers["retry-after"]) > 0 for a in answers if a.status_code == 429)
        # The limit holds for the right password from that address too, not from another one.
        assert (await post_all(base, [{"password": PASSWORD}]))[0].status_code == 429
        other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=base, transport=other, timeout=ANSWER_WITHIN) as client:
            assert (await client.post("/api/auth/login", json={"password": PASSWORD})).status_code == 200


@pytest.mark.anyio
async def test_a_flood_past_the_password_queue_gets_503_instead_of_hanging(tmp_path: Path) -> None:
    """100 logins from 20 addresses (5 each: the throttle admits them all) while the one running
    derivation is frozen: the default queue of 64 takes 64, the other 36 are told to come back.
    The wait limit is raised: 64 derivations in a row can take longer than the default 30 s on a
    loaded machine, and the default is what the next test waits for."""
    with live_server(make(tmp_path, password_queue_timeout_seconds=300)) as base:
        await set_up(base)
        answers: list[httpx.Response] = []
        with frozen_password_hashing() as release:
            async with anyio.create_task_group() as tg:
                for index in range(100):
                    tg.start_soon(send, base, {"password": PASSWORD}, answers, f"127.0.0.{10 + index // 5}")
                await until(answers, 36)
                assert [a.status_code for a in answers] == [503] * 36, [a.text for a in answers]
                assert all(int(a.headers["retry-after"]) >= 1 for a in answers)
                assert all(a.json()["details"]["retryAfterSeconds"] >= 1 for a in answers)
                release()
        assert Counter(a.status_code for a in answers) == {503: 36, 200: 64}
        # Nothing stays stuck, and refused attempts were not counted as failures.
        assert (await post_all(base, [{"password": PASSWORD}] * 6))[0].status_code == 200


@pytest.mark.anyio
async def test_a_derivation_that_never_returns_gives_503_after_the_queue_timeout(tmp_path: Path) -> None:
    """The default wait limit (30 s; this test mostly sleeps through it)."""
    with live_server(make(tmp_path)) as base:
        await set_up(base)
        answers: list[httpx.Response] = []
        with frozen_password_hashing(at_most=120) as release:
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(send, base, {"password": PASSWORD}, answers)
                await until(answers, 2, within=90)  # the two waiting behind the frozen one give up
                assert [a.status_code for a in answers] == [503, 503]
                assert all(int(a.headers["retry-after"]) >= 1 for a in answers)
                release()
        assert sorted(a.status_code for a in answers) == [200, 503, 503]


def test_an_outdated_hash_still_verifies_and_is_upgraded_at_login(tmp_path: Path) -> None:
    """A hash made with other parameters (here OWASP's 19 MiB, 2 passes, 1 lane) logs in and is
    replaced by one with the current defaults; the upgraded one logs in too."""
    with client_for(make(tmp_path)) as client:
        store = client.app.state.kernel.storage.accounts
        old = PasswordHasher(memory_kib=19456, iterations=2, lanes=1).hash_sync(PASSWORD)
        client.portal.call(store.update_user, "default_user", UserChanges(password_hash=old))
        assert client.post("/api/auth/login", json={"password": PASSWORD}).status_code == 200
        stored = client.portal.call(store.get_user, "default_user")
        assert stored.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert client.post("/api/auth/login", json={"password": PASSWORD}).status_code == 200
        assert client.post("/api/auth/login", json={"password": "not it at all"}).status_code == 401
