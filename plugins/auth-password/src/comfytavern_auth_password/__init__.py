"""Auth mode ``local-password``: one user (``default_user``, administrator) behind one access password.

The password is set with ``comfytavern set-password`` or, on first run, with
``POST /api/auth/setup`` (from this machine only unless ``first_run_from`` is ``any``). A login
starts a server-side session held in an ``HttpOnly`` ``SameSite`` cookie; ``Authorization: Bearer``
service keys work as in every mode. Failed logins are throttled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import msgspec
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from comfytavern import AuthMode, ServiceUse, hookimpl, provides
from comfytavern.auth import AuthStatus, Principal
from comfytavern.http import ApiError, read_json, route
from comfytavern.storage.accounts import AccountConflict, AccountStore, UserChanges, UserRecord, utc_now
from comfytavern_accounts.identity import (
    SESSION_SETTING_KEYS,
    AccountIdentity,
    AuthSettings,
    LoginRefused,
    check_new_password,
)
from comfytavern_accounts.secrets import SECRETS, default_secret_dir, server_secrets
from comfytavern_login import LoginResult, login_response, refused, session_routes

MODE = "local-password"
DEFAULT_USER_ID = "default_user"
DEFAULT_USERNAME = "本地用户"
ALREADY_SET = "an access password is already set; log in, or change it with PUT /api/auth/password"


class PasswordBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    password: str


class LoginBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    password: str
    #: Accepted for symmetry with ``multi-user``; there is only one user here.
    username: str | None = None


class PasswordAuth:
    name = MODE

    def __init__(self, store: AccountStore, identity: AccountIdentity) -> None:
        self.store = store
        self.identity = identity
        #: Serialises first-run set-up so two racing requests cannot both set the password.
        self._setup_lock = anyio.Lock()

    async def open(self) -> None:
        """Make sure the one user exists (the password may still be unset: first run)."""
        if await self.store.get_user(DEFAULT_USER_ID) is None:
            try:
                await self.store.create_user(
                    UserRecord(id=DEFAULT_USER_ID, username=DEFAULT_USERNAME, is_admin=True, created_at=utc_now())
                )
            except AccountConflict:
                pass

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        found = await self.identity.authenticate(conn)
        if found is False or found is None:
            return None
        if found.id != DEFAULT_USER_ID:
            # Accounts left over from another mode are not users of this one.
            return None
        return found

    async def _user(self) -> UserRecord:
        user = await self.store.get_user(DEFAULT_USER_ID)
        if user is None:
            raise ApiError(500, "the default user is missing from the accounts store")
        return user

    async def status(self) -> AuthStatus:
        user = await self.store.get_user(DEFAULT_USER_ID)
        return AuthStatus(password_required=True, password_setup_required=user is None or user.password_hash is None)

    # -- routes ----------------------------------------------------------------------------
    async def setup(self, request: Request) -> Response:
        body = await read_json(request, PasswordBody)
        if not self.identity.may_do_first_run(request):
            raise ApiError(
                403,
                "the first access password can only be set from this machine "
                "(or with `comfytavern set-password`)",
            )
        try:
            password = check_new_password(body.password, self.identity.settings.password_min_length)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        # Refuse before the slow hash, and hash outside the lock; the lock then decides for real.
        if (await self._user()).password_hash is not None:
            raise ApiError(409, ALREADY_SET)
        password_hash = await self.identity.hash_password(password)
        async with self._setup_lock:
            if (await self._user()).password_hash is not None:
                raise ApiError(409, ALREADY_SET)
            updated = await self.store.update_user(DEFAULT_USER_ID, UserChanges(password_hash=password_hash))
        if updated is None:
            raise ApiError(500, "the default user is missing from the accounts store")
        return await login_response(self.identity, request, updated, message="access password set", status=201)

    async def login(self, request: Request) -> Response:
        body = await read_json(request, LoginBody)
        user = await self._user()
        if user.password_hash is None:
            raise ApiError(409, "no access password is set yet; set one with POST /api/auth/setup or `comfytavern set-password`")
        try:
            checked = await self.identity.check_password(request, "", user, body.password)
        except LoginRefused as exc:
            raise refused(exc) from None
        return await login_response(self.identity, request, checked, message="logged in")

    def routes(self) -> Sequence[BaseRoute]:
        tags = ["auth"]
        return [
            route(
                "/api/auth/setup",
                self.setup,
                methods=["POST"],
                summary="First run: set the access password and log in",
                auth="public",
                body=PasswordBody,
                response=LoginResult,
                status=201,
                responses={
                    403: "not from this machine",
                    409: "a password is already set",
                    422: "password too short",
                    503: "too many password checks waiting",
                },
                tags=tags,
            ),
            route(
                "/api/auth/login",
                self.login,
                methods=["POST"],
                summary="Log in with the access password (sets the session cookie)",
                auth="public",
                body=LoginBody,
                response=LoginResult,
                responses={
                    401: "wrong password",
                    409: "no password set yet",
                    429: "too many failed attempts",
                    503: "too many password checks waiting",
                },
                tags=tags,
            ),
        ] + session_routes(self.identity, password_summary="Change the access password (ends every other session)")


def create(kernel: Any, raw: Mapping[str, Any]) -> PasswordAuth:
    from comfytavern.kernel import StartupError

    settings = AuthSettings.load(dict(raw), f"$.auth.settings.{MODE}", allowed=SESSION_SETTING_KEYS)
    if not kernel.storage.has("accounts"):
        raise StartupError(f"auth mode {MODE!r} keeps its password and sessions in storage.accounts, which is null")
    store: AccountStore = kernel.storage.accounts
    secrets = server_secrets(kernel.services, default_secret_dir(kernel.config))
    return PasswordAuth(store, AccountIdentity(store, secrets, settings, revocations=kernel.revocations))


@hookimpl
def register_services() -> list[ServiceUse]:
    return [provides(SECRETS)]


@hookimpl
def register_auth_modes(kernel: Any) -> list[AuthMode]:
    return [AuthMode(MODE, factory=create, description="one user behind an access password")]
