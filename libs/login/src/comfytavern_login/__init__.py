"""The HTTP side of the login-based auth modes (``local-password``, ``multi-user``): the login,
logout and password-change responses and routes they share, over
:class:`comfytavern_accounts.identity.AccountIdentity`.

A small library both auth-mode plugins depend on (plugins never import each other), kept out of
the kernel because only those modes answer logins.
"""

from __future__ import annotations

import msgspec
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from comfytavern.auth import Principal, current_principal
from comfytavern.http import ApiError, json_response, read_json, route
from comfytavern.revocation import Revocation
from comfytavern.storage.accounts import UserChanges, UserRecord
from comfytavern_accounts.identity import AccountIdentity, LoginRefused, check_new_password, refused

__all__ = [
    "Done",
    "LoginResult",
    "PasswordChange",
    "UserSummary",
    "change_password_response",
    "login_response",
    "logout_response",
    "refused",
    "session_routes",
    "summary",
]


class UserSummary(msgspec.Struct, frozen=True, rename="camel"):
    uid: str
    username: str
    is_admin: bool


class LoginResult(msgspec.Struct, frozen=True):
    success: bool
    message: str
    user: UserSummary


class Done(msgspec.Struct, frozen=True):
    success: bool
    message: str


class PasswordChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    current_password: str
    new_password: str


def summary(user: UserRecord) -> UserSummary:
    return UserSummary(uid=user.id, username=user.username, is_admin=user.is_admin)


async def login_response(identity: AccountIdentity, conn: HTTPConnection, user: UserRecord, *, message: str, status: int = 200) -> Response:
    """Start a new session for ``user`` and answer with the session cookie set."""
    token = await identity.start_session(conn, user.id)
    response = json_response(LoginResult(success=True, message=message, user=summary(user)), status)
    identity.set_cookie(response, token)
    return response


async def logout_response(identity: AccountIdentity, conn: HTTPConnection) -> Response:
    """End the caller's session (if any) and clear the cookie; always succeeds."""
    ended = await identity.end_session(conn)
    response = json_response(Done(success=True, message="logged out" if ended else "no session to end"))
    identity.clear_cookie(response)
    return response


async def change_password_response(identity: AccountIdentity, conn: HTTPConnection, principal: Principal, body: PasswordChange) -> Response:
    """Check the current password, store the new one, end every other session of the user.

    A cookie caller gets a fresh session id (privilege change); a key caller keeps no session.
    """
    user = await identity.store.get_user(principal.id)
    if user is None:
        raise ApiError(404, "user not found")
    try:
        new = check_new_password(body.new_password, identity.settings.password_min_length)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    try:
        await identity.check_password(conn, user.username, user, body.current_password)
    except LoginRefused as exc:
        raise refused(exc, wrong_status=403) from None
    await identity.store.update_user(user.id, UserChanges(password_hash=await identity.hash_password(new)))
    await identity.store.delete_user_sessions(user.id)
    await identity.revocations.announce(Revocation.sessions(user.id))
    response = json_response(Done(success=True, message="password changed; other sessions were logged out"))
    if principal.via == "session":
        token = await identity.start_session(conn, user.id)
        identity.set_cookie(response, token)
    return response


def session_routes(identity: AccountIdentity, *, password_summary: str) -> list[BaseRoute]:
    """``POST /api/auth/logout`` and ``PUT /api/auth/password``, the same in every login-based mode."""
    async def logout(request: Request) -> Response:
        return await logout_response(identity, request)

    async def change_password(request: Request) -> Response:
        body = await read_json(request, PasswordChange)
        return await change_password_response(identity, request, current_principal(request), body)

    return [
        route(
            "/api/auth/logout",
            logout,
            methods=["POST"],
            summary="End the current session and clear the cookie",
            auth="public",
            response=Done,
            tags=["auth"],
        ),
        route(
            "/api/auth/password",
            change_password,
            methods=["PUT"],
            summary=password_summary,
            auth="user",
            scope="account",
            body=PasswordChange,
            response=Done,
            responses={
                403: "current password is wrong",
                422: "new password too short",
                429: "too many failed attempts",
                503: "too many password checks waiting",
            },
            tags=["auth"],
        ),
    ]
