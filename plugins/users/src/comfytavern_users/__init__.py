"""Account routes for every auth mode: the editor's ``UserContext``, service API keys, encrypted
external credentials, the profile (username, avatar), the account CLI, and the ``credentials``
service nodes use (``await ctx.credential("openai")``).

Routes (all under the ``account`` scope for service keys): see ``docs/auth.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from comfytavern import ServiceUse, hookimpl, provides
from comfytavern.http import route
from comfytavern.records import CliCommand
from comfytavern.services import CREDENTIALS
from comfytavern_accounts.secrets import SECRETS
from comfytavern_users import credentials, keys, profile
from comfytavern_users.cli import commands
from comfytavern_users.context import current_context
from comfytavern_users.service import Accounts, accounts_for
from comfytavern_users.wire import (
    AvatarForm,
    AvatarUploaded,
    CredentialCreate,
    CredentialList,
    CredentialMeta,
    ServiceKeyCreate,
    ServiceKeyList,
    ServiceKeyWithSecret,
    UserContext,
    UsernameChange,
    UsernameChanged,
)

__all__ = ["lifespan", "register_commands", "register_routes"]

Handler = Callable[[Accounts, Request], Awaitable[Response]]
TAGS = ["account"]


def _bind(accounts: Accounts, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handler(accounts, request)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def _collection(
    accounts: Accounts,
    path: str,
    name: str,
    listing: tuple[Handler, str, Any],
    creating: tuple[Handler, str, Any, Any],
    create_errors: dict[int, str],
) -> list[BaseRoute]:
    """GET (list) and POST (create, 201) on ``path``, also answered with a trailing slash."""
    out: list[BaseRoute] = []
    for suffix in ("", "/"):
        tail = "_slash" if suffix else ""
        out.append(
            route(
                path + suffix,
                _bind(accounts, listing[0]),
                name=f"list_{name}{tail}",
                summary=listing[1],
                auth="user",
                scope="account",
                response=listing[2],
                tags=TAGS,
            )
        )
        out.append(
            route(
                path + suffix,
                _bind(accounts, creating[0]),
                methods=["POST"],
                name=f"create_{name}{tail}",
                summary=creating[1],
                auth="user",
                scope="account",
                body=creating[2],
                response=creating[3],
                status=201,
                responses=create_errors,
                tags=TAGS,
            )
        )
    return out


@hookimpl
def register_services() -> list[ServiceUse]:
    return [provides(CREDENTIALS), provides(SECRETS)]


@hookimpl
def register_scope_groups() -> list[str]:
    return ["account"]


@hookimpl
def register_routes(kernel: Any) -> list[BaseRoute]:
    accounts = accounts_for(kernel)
    out: list[BaseRoute] = [
        route(
            "/api/auth/current",
            _bind(accounts, current_context),
            summary="The caller's UserContext (mode, login state, user, keys, credentials)",
            description="`SingleUser` for the `local` and `local-password` modes, `MultiUser` for `multi-user`.",
            auth="public",
            response=UserContext,
            tags=["auth"],
        ),
    ]
    out += _collection(
        accounts,
        "/api/users/me/service-keys",
        "service_keys",
        (keys.list_keys, "List your service API keys (never their secrets)", ServiceKeyList),
        (keys.create_key, "Create a service API key; the secret is in this response only", ServiceKeyCreate, ServiceKeyWithSecret),
        {403: "a key may not create a key with more scopes than it has", 409: "too many keys", 422: "invalid name or scope"},
    )
    out.append(
        route(
            "/api/users/me/service-keys/{key_id}",
            _bind(accounts, keys.delete_key),
            methods=["DELETE"],
            summary="Delete (revoke) one of your service API keys",
            auth="user",
            scope="account",
            status=204,
            responses={404: "no such key of yours"},
            tags=TAGS,
        )
    )
    out += _collection(
        accounts,
        "/api/users/me/credentials",
        "credentials",
        (credentials.list_credentials, "List your external service credentials (never their values)", CredentialList),
        (credentials.create_credential, "Store a credential (AES-256-GCM encrypted; never returned)", CredentialCreate, CredentialMeta),
        {409: "too many credentials", 422: "invalid field", 503: "credential encryption unavailable"},
    )
    out += [
        route(
            "/api/users/me/credentials/{credential_id}",
            _bind(accounts, credentials.delete_credential),
            methods=["DELETE"],
            summary="Delete one of your credentials",
            auth="user",
            scope="account",
            status=204,
            responses={404: "no such credential of yours"},
            tags=TAGS,
        ),
        route(
            "/api/users/me/username",
            _bind(accounts, profile.change_username),
            methods=["PUT"],
            summary="Change your username",
            auth="user",
            scope="account",
            body=UsernameChange,
            response=UsernameChanged,
            responses={409: "username taken", 422: "invalid username"},
            tags=TAGS,
        ),
        route(
            "/api/users/me/avatar",
            _bind(accounts, profile.upload_avatar),
            methods=["POST"],
            summary="Upload your avatar (multipart field 'avatar'; PNG, JPEG, GIF or WebP, at most 5 MB)",
            description="The image is decoded, scaled to fit 256x256 and re-encoded as a PNG without metadata.",
            auth="user",
            scope="account",
            body=AvatarForm,
            body_content_type="multipart/form-data",
            response=AvatarUploaded,
            responses={400: "malformed multipart", 413: "file too large", 415: "not multipart", 422: "not a usable image"},
            tags=TAGS,
        ),
        route(
            "/avatars/{filename}",
            _bind(accounts, profile.serve_avatar),
            summary="An avatar image (yours; administrators: anyone's); a generated one if none was uploaded",
            auth="user",
            scope="account",
            content_type="image/png",
            responses={404: "not your avatar, or no such user"},
            tags=TAGS,
        ),
    ]
    return out


@hookimpl
def lifespan(kernel: Any) -> contextlib.AbstractAsyncContextManager[None] | None:
    accounts = accounts_for(kernel)
    if accounts.store is None:
        return None

    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[None]:
        # Load (or create, 0600) the key material now, so a problem shows at start-up.
        await accounts.secrets.keyring()
        await accounts.secrets.pepper()
        resolve = accounts.resolve_credential
        kernel.services.provide(CREDENTIALS, resolve)
        try:
            yield
        finally:
            kernel.services.withdraw(CREDENTIALS, resolve)

    return run()


@hookimpl
def register_commands(kernel: Any) -> list[CliCommand]:
    return commands()
