"""``multi-user`` under load and hostile clients over real HTTP, with the production Argon2id cost.

Fault/load layer (``-m fault``): a real uvicorn server on loopback (the settings of
``comfytavern serve``), real concurrent clients from several loopback addresses (127.0.0.x), and no
hashing settings, so the production defaults are what is measured.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from comfytavern_testing import live_server, make_kernel

pytestmark = [pytest.mark.fault, pytest.mark.anyio]

STORAGE = {"projects": None, "accounts": "sqlite", "runs": None}
ADMIN = {"username": "admin", "password": "the admin password"}
ALICE = {"username": "alice", "password": "alice's real password"}
#: Generous: a bound that says "answers", not a speed goal (those live in benchmarks/).
ANSWER_WITHIN = 90.0


def make(tmp_path: Path, server: dict[str, Any] | None = None, **settings: Any) -> Any:
    return make_kernel(
        tmp_path,
        storage=STORAGE,
        server=server or {},
        auth={"mode": "multi-user", "settings": {"multi-user": settings}},
    )


def client(base: str, source: str | None = None) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source) if source else None
    return httpx.AsyncClient(base_url=base, timeout=ANSWER_WITHIN, transport=transport)


async def call(base: str, method: str, path: str, body: dict[str, Any], *, source: str | None = None,
               headers: dict[str, str] | None = None) -> httpx.Response:
    async with client(base, source) as c:
        return await c.request(method, path, json=body, headers=headers)


async def gather(*calls: Any) -> list[httpx.Response]:
    """Run every ``(method, path, body, kwargs)`` at once; answers in the order given."""
    answers: list[httpx.Response | None] = [None] * len(calls)

    async def one(index: int, method: str, path: str, body: dict[str, Any], kwargs: dict[str, Any]) -> None:
        answers[index] = await call(base_url, method, path, body, **kwargs)

    base_url = calls[0][0]
    with anyio.fail_after(ANSWER_WITHIN):
        async with anyio.create_task_group() as tg:
            for index, (_, method, path, body, kwargs) in enumerate(calls):
                tg.start_soon(one, index, method, path, body, kwargs)
    return [a for a in answers if a is not None]


async def seed(base: str) -> None:
    """The first administrator (from this machine), who then creates alice."""
    async with client(base) as admin:
        assert (await admin.post("/api/auth/register", json=ADMIN)).status_code == 201
        assert (await admin.post("/api/auth/register", json=ALICE)).status_code == 201


def login(base: str, password: str, *, source: str | None = None, forwarded: str | None = None) -> tuple[Any, ...]:
    headers = {"X-Forwarded-For": forwarded} if forwarded else None
    return (base, "POST", "/api/auth/login", {"username": "alice", "password": password}, {"source": source, "headers": headers})


async def test_rotating_forwarded_addresses_from_an_untrusted_peer_are_one_address(tmp_path: Path) -> None:
    with live_server(make(tmp_path)) as base:  # default limit: 5 per account and address
        await seed(base)
        answers = await gather(*(login(base, f"guess {i}", forwarded=f"203.0.113.{i}") for i in range(12)))
        counts = Counter(a.status_code for a in answers)
        assert counts[401] == 5 and counts[429] == 7, counts
        # The right password from this address is throttled too; from another address it is not.
        assert (await gather(login(base, ALICE["password"], forwarded="198.51.100.1")))[0].status_code == 429
        assert (await gather(login(base, ALICE["password"], source="127.0.0.2")))[0].status_code == 200


async def test_a_trusted_proxy_gives_each_client_its_own_limits(tmp_path: Path) -> None:
    kernel = make(tmp_path, server={"trusted_proxies": ["127.0.0.1"]}, login_max_failures=3)
    with live_server(kernel) as base:
        await seed(base)
        # A botnet behind the proxy: 100 addresses (the default per-account limit), one wrong guess
        # each, in waves the password queue takes in well under its timeout even on a loaded machine
        # (more at once would rightly get some 503s).
        answers: list[httpx.Response] = []
        for wave in range(0, 100, 20):
            answers += await gather(*(login(base, f"guess {i}", forwarded=f"203.0.113.{i}") for i in range(wave, wave + 20)))
        assert Counter(a.status_code for a in answers) == {401: 100}  # one address each: none throttled
        # One of them keeps guessing: its own limit (3) stops it...
        answers = await gather(*(login(base, f"again {i}", forwarded="203.0.113.7") for i in range(6)))
        assert Counter(a.status_code for a in answers) == {401: 2, 429: 4}
        # ...while the account, past its 100 failures, still lets its owner in from a new address.
        owner = await gather(login(base, ALICE["password"], forwarded="192.0.2.50"))
        assert owner[0].status_code == 200, owner[0].text
        # A peer that is not the trusted proxy cannot use the header.
        spoofed = await gather(*(login(base, f"x {i}", source="127.0.0.2", forwarded=f"198.51.100.{i}") for i in range(5)))
        assert Counter(a.status_code for a in spoofed) == {401: 3, 429: 2}


async def test_concurrent_registrations_and_password_changes(tmp_path: Path) -> None:
    with live_server(make(tmp_path, registration="open")) as base:
        await seed(base)
        names = [f"user{i}" for i in range(10)]
        answers = await gather(*(
            (base, "POST", "/api/auth/register", {"username": n, "password": f"{n} password"}, {}) for n in names
        ))
        assert [a.status_code for a in answers] == [201] * 10, [a.text for a in answers]
        clash = await gather(*(
            (base, "POST", "/api/auth/register", {"username": "same", "password": f"password {i}"}, {}) for i in range(4)
        ))
        assert sorted(a.status_code for a in clash) == [201, 409, 409, 409]

        async def change(name: str) -> int:
            async with client(base) as c:
                assert (await c.post("/api/auth/login", json={"username": name, "password": f"{name} password"})).status_code == 200
                changed = await c.put(
                    "/api/auth/password", json={"currentPassword": f"{name} password", "newPassword": f"{name} new password"}
                )
                return changed.status_code

        codes: list[int] = []

        async def run(name: str) -> None:
            codes.append(await change(name))

        with anyio.fail_after(ANSWER_WITHIN):
            async with anyio.create_task_group() as tg:
                for name in names:
                    tg.start_soon(run, name)
        assert codes == [200] * 10
        relogin = await gather(*(
            (base, "POST", "/api/auth/login", {"username": n, "password": f"{n} new password"}, {}) for n in names
        ))
        assert [a.status_code for a in relogin] == [200] * 10
