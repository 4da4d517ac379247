"""Auth mode ``local``: the single-user, no-password mode (the default).

Every browser connection is the administrator ``default_user``; there is nothing to log in to. With
``storage.accounts`` configured the user is a real row (so its name and avatar can change) and
``Authorization: Bearer ctsk_...`` keys work, limited by their scopes; a presented key that is not
valid gets no fallback to the default user (401). With ``storage.accounts`` null the fixed
principal is used and keys are not available.

Because anyone who can reach the port is the administrator, the mode refuses to start on a
non-loopback ``server.host`` unless ``auth.settings.local.allow_remote`` is true.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute

from comfytavern import AuthMode, ConfigError, Principal, ServiceUse, hookimpl, provides
from comfytavern.auth import AuthStatus, bearer_token, is_loopback
from comfytavern.storage.accounts import AccountConflict, AccountStore, UserChanges, UserRecord, utc_now
from comfytavern_accounts.identity import AccountIdentity, AuthSettings
from comfytavern_accounts.secrets import SECRETS, default_secret_dir, server_secrets

DEFAULT_USER_ID = "default_user"
DEFAULT_USERNAME = "本地用户"


class LocalSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Name given to the default user when it is first created.
    username: str = DEFAULT_USERNAME
    #: Allow a non-loopback ``server.host`` (everyone who can reach it is the administrator).
    allow_remote: bool = False


class LocalAuth:
    name = "local"

    def __init__(self, settings: LocalSettings, store: AccountStore | None, identity: AccountIdentity | None) -> None:
        self.settings = settings
        self.store = store
        self.identity = identity
        self.principal = Principal(id=DEFAULT_USER_ID, username=settings.username, is_admin=True, via="local")

    async def open(self) -> None:
        """Make sure the default user exists (the kernel opened the accounts store first)."""
        if self.store is None:
            return
        user = await self.store.get_user(DEFAULT_USER_ID)
        if user is None:
            try:
                await self.store.create_user(
                    UserRecord(id=DEFAULT_USER_ID, username=self.settings.username, is_admin=True, created_at=utc_now())
                )
            except AccountConflict:
                user = await self.store.get_user(DEFAULT_USER_ID)
        elif not user.is_admin:
            await self.store.update_user(DEFAULT_USER_ID, UserChanges(is_admin=True))
        if user is not None:
            self.principal = Principal(id=user.id, username=user.username, is_admin=True, via="local")

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        token = bearer_token(conn)
        if token is not None:
            if self.identity is None:
                return None
            principal = await self.identity.from_service_key(token)
            # Only the one local user exists in this mode (accounts from another mode do not).
            return principal if principal is not None and principal.id == DEFAULT_USER_ID else None
        return self.principal

    async def status(self) -> AuthStatus:
        return AuthStatus()

    def routes(self) -> Sequence[BaseRoute]:
        return []


def create(kernel: Any, raw: Mapping[str, Any]) -> LocalAuth:
    try:
        settings = msgspec.convert(dict(raw), LocalSettings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration at $.auth.settings.local: {exc}") from None
    host = kernel.config.server.host
    if not settings.allow_remote and not is_loopback(host):
        from comfytavern.kernel import StartupError

        raise StartupError(
            f"auth mode 'local' has no login, so it only listens on this machine, but server.host is {host!r}. "
            "Use 127.0.0.1, choose auth mode 'local-password' or 'multi-user', or set "
            "auth.settings.local.allow_remote to true if every client that can reach the port is trusted."
        )
    store: AccountStore | None = kernel.storage.accounts if kernel.storage.has("accounts") else None
    identity = None
    if store is not None:
        secrets = server_secrets(kernel.services, default_secret_dir(kernel.config))
        identity = AccountIdentity(store, secrets, AuthSettings(), revocations=kernel.revocations)
    return LocalAuth(settings, store, identity)


@hookimpl
def register_services() -> list[ServiceUse]:
    return [provides(SECRETS)]


@hookimpl
def register_auth_modes(kernel: Any) -> list[AuthMode]:
    return [AuthMode("local", factory=create, description="one administrator, no login (this machine only)")]
