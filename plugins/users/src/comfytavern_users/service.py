"""The plugin's per-kernel state: the accounts store, the server secrets and the credential vault."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from comfytavern.http import ApiError
from comfytavern.storage.accounts import AccountStore, CredentialRecord
from comfytavern_accounts.secrets import CredentialDecryptError, Keyring, ServerSecrets, default_secret_dir, server_secrets

__all__ = ["Accounts", "accounts_for"]


class Accounts:
    """What every route module of this plugin shares (one per kernel)."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.store: AccountStore | None = kernel.storage.accounts if kernel.storage.has("accounts") else None
        self.secrets: ServerSecrets = server_secrets(kernel.services, default_secret_dir(kernel.config))
        self.user_data_root = Path(kernel.config.data_path("user_data"))

    def require_store(self) -> AccountStore:
        if self.store is None:
            raise ApiError(503, "accounts storage is not configured (storage.accounts is null in config.json)")
        return self.store

    # -- the vault -------------------------------------------------------------------------
    async def encrypt(self, plaintext: str, *, user_id: str, record_id: str, service: str) -> str:
        ring = await self.secrets.keyring()
        return ring.encrypt(plaintext, user_id=user_id, record_id=record_id, service=service)

    async def decrypt(self, record: CredentialRecord) -> str:
        ring = await self.secrets.keyring()
        kid = Keyring.key_id_of(record.ciphertext)
        if kid is not None and kid not in ring.keys:
            # The key file may have been rotated by the CLI while this server ran.
            ring = await self.secrets.keyring(reload=True)
        return ring.decrypt(record.ciphertext, user_id=record.user_id, record_id=record.id, service=record.service_name)

    async def resolve_credential(self, user_id: str, service: str) -> str | None:
        """The ``CREDENTIALS`` service: the newest secret ``user_id`` stored for ``service``.

        Raises :class:`~comfytavern_accounts.secrets.CredentialDecryptError` when the stored value fails its
        integrity check, so a node reports it instead of calling the service without a key.
        """
        if self.store is None:
            return None
        record = await self.store.find_credential(user_id, service)
        if record is None:
            return None
        if record.user_id != user_id:
            raise CredentialDecryptError("credential owner mismatch")
        return await self.decrypt(record)


_by_kernel: weakref.WeakKeyDictionary[Any, Accounts] = weakref.WeakKeyDictionary()


def accounts_for(kernel: Any) -> Accounts:
    found = _by_kernel.get(kernel)
    if found is None:
        found = Accounts(kernel)
        _by_kernel[kernel] = found
    return found
