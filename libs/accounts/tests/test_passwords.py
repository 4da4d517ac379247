"""comfytavern_accounts.passwords: Argon2id hashing (bounded, never frozen) and the service-key format."""

from __future__ import annotations

import anyio
import pytest

from comfytavern_accounts.passwords import PasswordHasher, PasswordHasherBusy, new_service_key, parse_service_key, service_key_digest
from comfytavern_accounts.testing import frozen_password_hashing

FAST = PasswordHasher(memory_kib=64, iterations=1, lanes=1)


def test_password_hashing() -> None:
    encoded = FAST.hash_sync("pässword ﬁ")
    assert encoded.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert FAST.verify_sync("pässword ﬁ", encoded)
    assert FAST.verify_sync("pässword fi", encoded)  # NFKC: the ligature equals "fi"
    assert not FAST.verify_sync("password", encoded)
    assert not FAST.verify_sync("anything", None)  # unknown user: same work, always false
    assert not FAST.verify_sync("x" * 2000, encoded)
    assert not FAST.needs_rehash(encoded)
    assert PasswordHasher(memory_kib=128, iterations=1, lanes=1).needs_rehash(encoded)
    with pytest.raises(ValueError):
        PasswordHasher(memory_kib=4, iterations=1, lanes=1)


@pytest.mark.anyio
async def test_password_hashing_async() -> None:
    encoded = await FAST.hash("secret-one")
    assert await FAST.verify("secret-one", encoded)
    assert not await FAST.verify("secret-two", encoded)


def test_service_key_format() -> None:
    parts = new_service_key()
    assert parse_service_key(parts.token) == parts
    assert parts.prefix == parts.token[:17]
    assert len(parts.token) == 5 + 12 + 1 + 43
    assert parse_service_key(" " + parts.token + "\n") == parts
    for bad in ("", "ctsk_", parts.token + "x", parts.token.replace("ctsk_", "ghp_"), parts.token[:-1] + "-"):
        assert parse_service_key(bad) is None
    assert new_service_key() != parts
    digest = service_key_digest(b"p" * 32, parts.secret)
    assert digest != service_key_digest(b"q" * 32, parts.secret)
    assert len(digest) == 64



@pytest.mark.anyio
async def test_concurrent_verification_with_production_parameters_never_freezes() -> None:
    """Ten parallel logins with the default cost (4 lanes) all finish; multi-lane Argon2id froze
    when two threads derived at once."""
    hasher = PasswordHasher()  # production defaults: 64 MiB, 3 passes, 4 lanes
    encoded = hasher.hash_sync("correct horse")
    results: list[bool] = []

    async def login() -> None:
        results.append(await hasher.verify("correct horse", encoded))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(login)
    assert results == [True] * 10


@pytest.mark.anyio
async def test_waiting_derivations_are_bounded_and_time_out_instead_of_hanging() -> None:
    """A derivation that never returns used to hold every later login forever: now a full queue
    is refused at once and a wait longer than the timeout gives up, both with a retry hint."""
    hasher = PasswordHasher(memory_kib=64, iterations=1, lanes=1, queue_limit=3, queue_timeout=0.5)
    encoded = hasher.hash_sync("correct horse")
    results: list[bool | PasswordHasherBusy] = []

    async def check() -> None:
        try:
            results.append(await hasher.verify("correct horse", encoded))
        except PasswordHasherBusy as exc:
            results.append(exc)

    with frozen_password_hashing() as release:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(check)
            with anyio.fail_after(10):
                while len(results) < 4:
                    await anyio.sleep(0.01)
            # 2 over the limit of 3 refused at once, 2 waiting behind the frozen one timed out.
            assert all(isinstance(r, PasswordHasherBusy) and r.retry_after >= 1 for r in results)
            release()
    assert results[-1] is True  # the frozen derivation itself completes once let go
    assert await hasher.verify("correct horse", encoded)  # and the queue works again
    with pytest.raises(ValueError):
        PasswordHasher(queue_limit=0)
