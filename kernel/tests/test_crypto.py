"""comfytavern.crypto: passwords, service-key format, the AES-GCM keyring and the 0600 secret files."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import anyio
import pytest

from comfytavern.crypto import (
    CredentialDecryptError,
    Keyring,
    KeyringError,
    PasswordHasher,
    PasswordHasherBusy,
    ServerSecrets,
    decode_key,
    key_fingerprint,
    new_service_key,
    parse_service_key,
    service_key_digest,
)
from comfytavern.testing import frozen_password_hashing

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


def test_keyring_binds_owner_record_and_service() -> None:
    ring = Keyring.single(os.urandom(32))
    blob = ring.encrypt("sk-live", user_id="u1", record_id="r1", service="openai")
    assert blob.startswith(f"v1:{ring.current}:")
    assert "sk-live" not in blob
    assert ring.decrypt(blob, user_id="u1", record_id="r1", service="openai") == "sk-live"
    assert ring.encrypt("sk-live", user_id="u1", record_id="r1", service="openai") != blob  # fresh nonce
    for wrong in ({"user_id": "u2"}, {"record_id": "r2"}, {"service": "anthropic"}):
        context = {"user_id": "u1", "record_id": "r1", "service": "openai", **wrong}
        with pytest.raises(CredentialDecryptError, match="integrity"):
            ring.decrypt(blob, **context)
    version, kid, nonce, sealed = blob.split(":")
    tampered = f"{version}:{kid}:{nonce}:{'A' if sealed[0] != 'A' else 'B'}{sealed[1:]}"
    with pytest.raises(CredentialDecryptError):
        ring.decrypt(tampered, user_id="u1", record_id="r1", service="openai")
    with pytest.raises(CredentialDecryptError, match="not loaded"):
        Keyring.single(os.urandom(32)).decrypt(blob, user_id="u1", record_id="r1", service="openai")
    with pytest.raises(CredentialDecryptError, match="unknown format"):
        ring.decrypt("plaintext", user_id="u1", record_id="r1", service="openai")


def test_decode_key_forms() -> None:
    key = os.urandom(32)
    assert decode_key(base64.b64encode(key).decode(), what="k") == key
    assert decode_key(base64.urlsafe_b64encode(key).decode().rstrip("="), what="k") == key
    assert decode_key(key.hex(), what="k") == key
    for bad in ("", "abc", base64.b64encode(os.urandom(16)).decode(), "!" * 44):
        with pytest.raises(KeyringError, match="32 random bytes"):
            decode_key(bad, what="k")


def test_secret_files_are_created_private_and_reused(tmp_path: Path) -> None:
    secrets = ServerSecrets(tmp_path / "secret", environ={})
    ring = secrets.keyring_sync()
    pepper = secrets.pepper_sync()
    key_file = tmp_path / "secret" / "master.key"
    for path in (key_file, tmp_path / "secret" / "service-key.pepper"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o700
    again = ServerSecrets(tmp_path / "secret", environ={})
    assert again.keyring_sync().keys == ring.keys
    assert again.pepper_sync() == pepper

    rotated = again.add_file_key()
    assert rotated.current != ring.current and set(rotated.keys) == {ring.current, rotated.current}
    assert json.loads(key_file.read_text())["current"] == rotated.current
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pruned = again.prune_file_keys(set())
    assert list(pruned.keys) == [rotated.current]

    key_file.write_text("{not json")
    with pytest.raises(KeyringError, match="not a valid keyring"):
        ServerSecrets(tmp_path / "secret", environ={}).keyring_sync()


def test_secrets_from_the_environment(tmp_path: Path) -> None:
    current, old, pepper = os.urandom(32), os.urandom(32), os.urandom(32)
    env = {
        "CT_MASTER_KEY": base64.b64encode(current).decode(),
        "CT_MASTER_KEY_PREVIOUS": f" {base64.b64encode(old).decode()} ,",
        "CT_SERVICE_KEY_PEPPER": base64.b64encode(pepper).decode(),
    }
    secrets = ServerSecrets(tmp_path / "secret", environ=env)
    ring = secrets.keyring_sync()
    assert ring.current == key_fingerprint(current)
    assert set(ring.keys) == {key_fingerprint(current), key_fingerprint(old)}
    assert secrets.pepper_sync() == pepper
    assert not (tmp_path / "secret").exists()
    with pytest.raises(KeyringError, match="environment"):
        secrets.add_file_key()
    explicit = ServerSecrets(tmp_path / "unused", environ={"CT_MASTER_KEY_FILE": str(tmp_path / "elsewhere.key")})
    explicit.keyring_sync()
    assert (tmp_path / "elsewhere.key").exists()


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
