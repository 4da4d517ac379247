"""The server's own secrets: the master keyring for external credentials and the service-key pepper.

- external credentials: AES-256-GCM with the owner, record id and service name as associated data,
  under a master keyring (env ``CT_MASTER_KEY`` or a 0600 key file created on first run);
- the pepper under which service API keys are HMAC'd (env ``CT_SERVICE_KEY_PEPPER`` or a file).

Both are the ``SECRETS`` service (:func:`server_secrets`, created on first use by whichever of the
auth modes and the users plugin needs it first). The key is declared here, not in the kernel:
only plugins built on this library use it. Password hashing, session tokens and the service-key
format are :mod:`comfytavern_accounts.passwords`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from comfytavern.files import fsync_dir, private_dir, write_atomic
from comfytavern.services import ServiceKey, Services

__all__ = [
    "CredentialDecryptError",
    "Keyring",
    "KeyringError",
    "SECRETS",
    "ServerSecrets",
    "decode_key",
    "default_secret_dir",
    "key_fingerprint",
    "server_secrets",
    "write_private",
]

log = logging.getLogger("comfytavern.crypto")

# -- external credentials --------------------------------------------------------------------
class KeyringError(Exception):
    """The master key material is missing, malformed or unreadable; the message says which."""


class CredentialDecryptError(Exception):
    """A stored credential does not decrypt: tampered, moved to another row, or an unknown key."""


def key_fingerprint(key: bytes) -> str:
    """A short public id for a master key (recorded in every ciphertext)."""
    return hashlib.sha256(b"ct-master-key-id|" + key).hexdigest()[:12]


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_key(text: str, *, what: str) -> bytes:
    """A 32-byte key given as standard or URL-safe base64 (or 64 hex digits)."""
    raw = text.strip()
    key: bytes | None = None
    if re.fullmatch(r"[0-9a-fA-F]{64}", raw):
        key = bytes.fromhex(raw)
    else:
        try:
            key = base64.b64decode(raw.replace("-", "+").replace("_", "/") + "=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != 32:
        raise KeyringError(f"{what} must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)")
    return key


class Keyring:
    """Master keys by id; encrypts with ``current``, decrypts with whichever key a record names.

    Record format: ``v1:<key id>:<nonce>:<ciphertext+tag>`` (URL-safe base64 parts). The associated
    data binds the ciphertext to its owner, record id and service: a value copied to another row or
    another user fails to decrypt.
    """

    VERSION = "v1"

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise KeyringError("the current master key is not in the keyring")
        for kid, key in keys.items():
            if len(key) != 32:
                raise KeyringError(f"master key {kid} is not 32 bytes")
        self.keys = dict(keys)
        self.current = current

    @classmethod
    def single(cls, key: bytes) -> Keyring:
        kid = key_fingerprint(key)
        return cls({kid: key}, kid)

    @staticmethod
    def associated_data(user_id: str, record_id: str, service: str) -> bytes:
        return "|".join(("ct-cred", Keyring.VERSION, user_id, record_id, service)).encode("utf-8")

    def encrypt(self, plaintext: str, *, user_id: str, record_id: str, service: str) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)
        aad = self.associated_data(user_id, record_id, service)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode("utf-8"), aad)
        return ":".join((self.VERSION, self.current, _b64e(nonce), _b64e(sealed)))

    @staticmethod
    def key_id_of(blob: str) -> str | None:
        parts = blob.split(":")
        return parts[1] if len(parts) == 4 and parts[0] == Keyring.VERSION else None

    def decrypt(self, blob: str, *, user_id: str, record_id: str, service: str) -> str:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        parts = blob.split(":")
        if len(parts) != 4 or parts[0] != self.VERSION:
            raise CredentialDecryptError("stored credential has an unknown format")
        _, kid, nonce_text, sealed_text = parts
        key = self.keys.get(kid)
        if key is None:
            raise CredentialDecryptError(f"stored credential was encrypted with master key {kid}, which is not loaded")
        try:
            nonce, sealed = _b64d(nonce_text), _b64d(sealed_text)
            plain = AESGCM(key).decrypt(nonce, sealed, self.associated_data(user_id, record_id, service))
        except (InvalidTag, ValueError, binascii.Error):
            raise CredentialDecryptError(
                "stored credential failed its integrity check (tampered, or moved to another record)"
            ) from None
        return plain.decode("utf-8")


# -- secret files ----------------------------------------------------------------------------
ENV_MASTER_KEY = "CT_MASTER_KEY"
ENV_MASTER_KEY_PREVIOUS = "CT_MASTER_KEY_PREVIOUS"
ENV_MASTER_KEY_FILE = "CT_MASTER_KEY_FILE"
ENV_PEPPER = "CT_SERVICE_KEY_PEPPER"


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to a file created with mode 0600 (never readable by others, even briefly).

    ``exclusive`` fails if the file exists; otherwise the file is replaced atomically. Missing
    folders are created 0700.
    """
    private_dir(path.parent)
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(path.parent)
        return
    write_atomic(path, data, mode=0o600)


def _private_dir(folder: Path) -> None:
    """Create ``folder`` for key files if missing, reachable by the server's user only (0700).

    An existing folder (e.g. one named by ``CT_MASTER_KEY_FILE``) is left as its owner set it.
    """
    if not folder.exists():
        private_dir(folder)


def _read_private(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users (mode %o); run: chmod 600 %s", path, mode & 0o777, path)
    return path.read_bytes()


class ServerSecrets:
    """The server's two long-lived secrets, loaded once and kept in memory.

    - the **master keyring** for credentials: env ``CT_MASTER_KEY`` (base64, 32 bytes; older keys
      still accepted for decryption in ``CT_MASTER_KEY_PREVIOUS``, comma-separated), else the JSON
      key file ``CT_MASTER_KEY_FILE`` or ``<secret_dir>/master.key``, created 0600 on first use;
    - the **service-key pepper**: env ``CT_SERVICE_KEY_PEPPER`` or ``<secret_dir>/service-key.pepper``
      (0600). It is separate from the master key so rotating the master key keeps API keys valid.
    """

    def __init__(self, secret_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self.secret_dir = Path(secret_dir)
        self.environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._keyring: Keyring | None = None
        self._pepper: bytes | None = None

    # -- locations -------------------------------------------------------------------------
    @property
    def master_key_file(self) -> Path:
        explicit = self.environ.get(ENV_MASTER_KEY_FILE)
        return Path(explicit) if explicit else self.secret_dir / "master.key"

    @property
    def pepper_file(self) -> Path:
        return self.secret_dir / "service-key.pepper"

    @property
    def keyring_from_env(self) -> bool:
        return bool(self.environ.get(ENV_MASTER_KEY))

    # -- pepper ----------------------------------------------------------------------------
    def pepper_sync(self) -> bytes:
        with self._lock:
            if self._pepper is None:
                env = self.environ.get(ENV_PEPPER)
                if env:
                    self._pepper = decode_key(env, what=ENV_PEPPER)
                else:
                    self._pepper = self._load_or_create_raw(self.pepper_file)
            return self._pepper

    def _load_or_create_raw(self, path: Path) -> bytes:
        if not path.exists():
            _private_dir(path.parent)
            try:
                write_private(path, _b64e(os.urandom(32)).encode("ascii") + b"\n", exclusive=True)
                log.info("created %s (mode 0600)", path)
            except FileExistsError:
                pass
        try:
            return decode_key(_read_private(path).decode("ascii"), what=str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyringError(f"cannot read {path}: {exc}") from None

    # -- keyring ---------------------------------------------------------------------------
    def keyring_sync(self, *, reload: bool = False) -> Keyring:
        with self._lock:
            if self._keyring is None or reload:
                self._keyring = self._load_keyring()
            return self._keyring

    def _load_keyring(self) -> Keyring:
        env = self.environ.get(ENV_MASTER_KEY)
        if env:
            current = decode_key(env, what=ENV_MASTER_KEY)
            keys = {key_fingerprint(current): current}
            for index, item in enumerate(filter(None, (s.strip() for s in self.environ.get(ENV_MASTER_KEY_PREVIOUS, "").split(",")))):
                old = decode_key(item, what=f"{ENV_MASTER_KEY_PREVIOUS} entry {index + 1}")
                keys.setdefault(key_fingerprint(old), old)
            return Keyring(keys, key_fingerprint(current))
        path = self.master_key_file
        if not path.exists():
            _private_dir(path.parent)
            key = os.urandom(32)
            try:
                write_private(path, _keyring_json({key_fingerprint(key): key}, key_fingerprint(key)), exclusive=True)
                log.info("created master key file %s (mode 0600)", path)
            except FileExistsError:
                pass
        return _parse_keyring_file(path)

    def add_file_key(self, key: bytes | None = None) -> Keyring:
        """Make a new (or given) key current in the key file, keeping the old ones for decryption."""
        if self.keyring_from_env:
            raise KeyringError(f"the master key comes from {ENV_MASTER_KEY}; change the environment instead")
        with self._lock:
            ring = self._load_keyring()
            new = key or os.urandom(32)
            keys = {**ring.keys, key_fingerprint(new): new}
            write_private(self.master_key_file, _keyring_json(keys, key_fingerprint(new)), exclusive=False)
            self._keyring = Keyring(keys, key_fingerprint(new))
            return self._keyring

    def prune_file_keys(self, keep: set[str]) -> Keyring:
        """Drop every key from the key file except the current one and ``keep``."""
        if self.keyring_from_env:
            raise KeyringError(f"the master key comes from {ENV_MASTER_KEY}; change the environment instead")
        with self._lock:
            ring = self._load_keyring()
            keys = {kid: key for kid, key in ring.keys.items() if kid == ring.current or kid in keep}
            write_private(self.master_key_file, _keyring_json(keys, ring.current), exclusive=False)
            self._keyring = Keyring(keys, ring.current)
            return self._keyring

    # -- async facade ----------------------------------------------------------------------
    async def pepper(self) -> bytes:
        if self._pepper is not None:
            return self._pepper
        return await anyio.to_thread.run_sync(self.pepper_sync)

    async def keyring(self, *, reload: bool = False) -> Keyring:
        if self._keyring is not None and not reload:
            return self._keyring
        return await anyio.to_thread.run_sync(lambda: self.keyring_sync(reload=reload))


def _keyring_json(keys: Mapping[str, bytes], current: str) -> bytes:
    doc = {
        "version": 1,
        "current": current,
        "keys": {kid: base64.b64encode(key).decode("ascii") for kid, key in keys.items()},
    }
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def _parse_keyring_file(path: Path) -> Keyring:
    try:
        raw = _read_private(path)
    except OSError as exc:
        raise KeyringError(f"cannot read master key file {path}: {exc}") from None
    try:
        doc = json.loads(raw)
        keys = {str(kid): decode_key(str(value), what=f"{path}: key {kid}") for kid, value in doc["keys"].items()}
        return Keyring(keys, str(doc["current"]))
    except KeyringError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KeyringError(
            f"master key file {path} is not a valid keyring (expected JSON with 'current' and 'keys')"
        ) from None


#: The server's :class:`ServerSecrets` (one per kernel).
SECRETS: ServiceKey[ServerSecrets] = ServiceKey("secrets", "the server's master key, pepper and session secret")


def server_secrets(services: Services, secret_dir: Path) -> ServerSecrets:
    """The one :class:`ServerSecrets` of a kernel (the ``SECRETS`` service, created on first use)."""
    return services.setdefault(SECRETS, lambda: ServerSecrets(secret_dir))


def default_secret_dir(config: Any) -> Path:
    """``<data.root>/data/secret`` (the ``data/`` folder is never committed)."""
    return Path(config.data_path("root")) / "data" / "secret"
