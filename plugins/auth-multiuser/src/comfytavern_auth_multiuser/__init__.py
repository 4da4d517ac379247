"""Auth mode ``multi-user``: accounts with usernames and passwords, each user's data separate.

- The first administrator is created by ``comfytavern create-user --admin`` or by the first
  registration (``POST /api/auth/register`` while no account exists; from this machine only unless
  ``first_run_from`` is ``any``).
- After that, ``registration`` decides: ``admin`` (default) lets only administrators create
  accounts; ``open`` lets anyone register (and be logged in at once).
- Login starts a server-side session (``HttpOnly`` ``SameSite`` cookie, a new id on every login);
  ``Authorization: Bearer`` service keys work as in every mode. Failed logins are throttled.
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
from comfytavern.auth import AuthStatus, Principal, optional_principal
from comfytavern.http import ApiError, json_response, read_json, route
from comfytavern.storage.accounts import AccountConflict, AccountStore, UserRecord, iso_utc, utc_now
from comfytavern_accounts.identity import (
    SESSION_SETTING_KEYS,
    AccountIdentity,
    AuthSettings,
    LoginRefused,
    check_new_password,
    check_username,
    new_user_id,
)
from comfytavern_accounts.secrets import SECRETS, default_secret_dir, server_secrets
from comfytavern_login import LoginResult, UserSummary, login_response, refused, session_routes, summary

MODE = "multi-user"


class RegisterBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    username: str
    password: str
    #: Honoured only when an administrator creates the account.
    is_admin: bool = False


class LoginBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    username: str
    password: str


class Registered(msgspec.Struct, frozen=True):
    success: bool
    message: str
    user: UserSummary


class UserRow(msgspec.Struct, frozen=True, rename="camel"):
    uid: str
    username: str
    is_admin: bool
    created_at: str


class UserList(msgspec.Struct, frozen=True):
    users: list[UserRow]


class MultiUserAuth:
    name = MODE

    def __init__(self, store: AccountStore, identity: AccountIdentity) -> None:
        self.store = store
        self.identity = identity
        #: Serialises registrations so two racing first registrations cannot both become admin.
        self._register_lock = anyio.Lock()

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        found = await self.identity.authenticate(conn)
        return None if found is False else found

    async def status(self) -> AuthStatus:
        return AuthStatus(
            multi_user=True,
            password_required=True,
            admin_registration_required=await self.store.count_users(with_password=True) == 0,
            registration_open=self.identity.settings.registration == "open",
        )

    # -- routes ----------------------------------------------------------------------------
    async def register(self, request: Request) -> Response:
        body = await read_json(request, RegisterBody)
        try:
            username = check_username(body.username)
            password = check_new_password(body.password, self.identity.settings.password_min_length)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        caller = optional_principal(request)
        by_admin = caller is not None and caller.is_admin and caller.has_scope("account:write")
        # Refuse before the slow hash (a closed registration costs no derivation), hash outside the
        # lock (registrations must not queue behind each other's hashing), then decide for real.
        await self._admission(request, by_admin, body.is_admin)
        password_hash = await self.identity.hash_password(password)
        async with self._register_lock:
            first, is_admin = await self._admission(request, by_admin, body.is_admin)
            user = UserRecord(
                id=new_user_id(),
                username=username,
                password_hash=password_hash,
                is_admin=is_admin,
                created_at=utc_now(),
            )
            try:
                await self.store.create_user(user)
            except AccountConflict as exc:
                raise ApiError(409, str(exc), {"field": exc.field}) from None
        if by_admin and not first:
            return json_response(Registered(success=True, message="account created", user=summary(user)), 201)
        message = "administrator account created" if first else "account created"
        return await login_response(self.identity, request, user, message=message, status=201)

    async def _admission(self, request: Request, by_admin: bool, wants_admin: bool) -> tuple[bool, bool]:
        """(is this the first account, will it be an administrator), or the 403 refusing it."""
        first = await self.store.count_users(with_password=True) == 0
        if first:
            if not self.identity.may_do_first_run(request):
                raise ApiError(
                    403,
                    "the first (administrator) account can only be registered from this machine "
                    "(or with `comfytavern create-user --admin`)",
                )
            return True, True
        if by_admin:
            return False, wants_admin
        if self.identity.settings.registration == "open":
            return False, False
        raise ApiError(403, "registration is closed: ask an administrator to create your account")

    async def login(self, request: Request) -> Response:
        body = await read_json(request, LoginBody)
        account = body.username.strip()
        user = await self.store.get_user_by_username(account) if account else None
        try:
            checked = await self.identity.check_password(request, account, user, body.password)
        except LoginRefused as exc:
            raise refused(exc) from None
        return await login_response(self.identity, request, checked, message="logged in")

    async def list_users(self, request: Request) -> Response:
        users = await self.store.list_users()
        rows = [UserRow(uid=u.id, username=u.username, is_admin=u.is_admin, created_at=iso_utc(u.created_at)) for u in users]
        return json_response(UserList(users=rows))

    def routes(self) -> Sequence[BaseRoute]:
        tags = ["auth"]
        return [
            route(
                "/api/auth/register",
                self.register,
                methods=["POST"],
                summary="Create an account (the first one is the administrator)",
                description="Open to anyone when `registration` is `open`; otherwise only administrators "
                "create accounts, except the very first one. Self-registration logs the new user in.",
                auth="public",
                body=RegisterBody,
                response=Registered,
                status=201,
                responses={
                    403: "registration closed / first run not from this machine",
                    409: "username taken",
                    422: "invalid username or password",
                    503: "too many password checks waiting",
                },
                tags=tags,
            ),
            route(
                "/api/auth/login",
                self.login,
                methods=["POST"],
                summary="Log in with username and password (sets the session cookie)",
                auth="public",
                body=LoginBody,
                response=LoginResult,
                responses={401: "wrong username or password", 429: "too many failed attempts", 503: "too many password checks waiting"},
                tags=tags,
            ),
            route(
                "/api/auth/users",
                self.list_users,
                summary="List every account (administrators only)",
                auth="admin",
                scope="account",
                response=UserList,
                tags=tags,
            ),
        ] + session_routes(self.identity, password_summary="Change your password (ends every other session)")


def create(kernel: Any, raw: Mapping[str, Any]) -> MultiUserAuth:
    from comfytavern.kernel import StartupError

    settings = AuthSettings.load(dict(raw), f"$.auth.settings.{MODE}", allowed=SESSION_SETTING_KEYS | {"registration"})
    if not kernel.storage.has("accounts"):
        raise StartupError(f"auth mode {MODE!r} keeps its accounts and sessions in storage.accounts, which is null")
    store: AccountStore = kernel.storage.accounts
    secrets = server_secrets(kernel.services, default_secret_dir(kernel.config))
    return MultiUserAuth(store, AccountIdentity(store, secrets, settings, revocations=kernel.revocations))


@hookimpl
def register_services() -> list[ServiceUse]:
    return [provides(SECRETS)]


@hookimpl
def register_auth_modes(kernel: Any) -> list[AuthMode]:
    return [AuthMode(MODE, factory=create, description="accounts with registration and login")]
