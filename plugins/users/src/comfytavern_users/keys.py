"""``/api/users/me/service-keys``: list, create (secret shown once), delete."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

from comfytavern.auth import Principal, current_principal
from comfytavern.http import ApiError, json_response, read_json
from comfytavern.revocation import Revocation
from comfytavern.storage.accounts import AccountConflict, AccountStore, ServiceKeyRecord, iso_utc, utc_now
from comfytavern_accounts.identity import check_scope, scope_covers
from comfytavern_accounts.passwords import new_service_key, service_key_digest
from comfytavern_users.service import Accounts
from comfytavern_users.wire import ServiceKeyCreate, ServiceKeyList, ServiceKeyWithSecret, key_meta

__all__ = ["MAX_KEYS_PER_USER", "create_key", "delete_key", "known_scope_groups", "list_keys", "mint_key"]

MAX_KEYS_PER_USER = 100
MAX_SCOPES = 32
NOT_FOUND = "Service API Key not found or access denied."


def known_scope_groups(contributed: Iterable[str], routes: Iterable[object]) -> set[str]:
    """The groups plugins contribute (``register_scope_groups``) plus every group a mounted route declares."""
    groups = set(contributed)
    for item in routes:
        scope = getattr(getattr(item, "doc", None), "scope", None)
        if scope:
            groups.add(scope)
    return groups


def _validate(body: ServiceKeyCreate, known: set[str]) -> tuple[str | None, tuple[str, ...]]:
    name = body.name
    if name is not None:
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise ApiError(422, "validation failed", [{"path": "$.name", "message": "Key name must be between 1 and 100 characters if provided."}])
    scopes = ["*"] if body.scopes is None else body.scopes
    if not scopes:
        raise ApiError(422, "validation failed", [{"path": "$.scopes", "message": "give at least one scope (or leave scopes out for '*')"}])
    if len(scopes) > MAX_SCOPES:
        raise ApiError(422, "validation failed", [{"path": "$.scopes", "message": f"at most {MAX_SCOPES} scopes"}])
    checked: list[str] = []
    for index, scope in enumerate(scopes):
        try:
            value = check_scope(scope.strip(), known)
        except ValueError as exc:
            raise ApiError(422, "validation failed", [{"path": f"$.scopes[{index}]", "message": str(exc)}]) from None
        if value not in checked:
            checked.append(value)
    return name, tuple(checked)


async def mint_key(accounts: Accounts, store: AccountStore, user_id: str, name: str | None, scopes: tuple[str, ...]) -> ServiceKeyWithSecret:
    """Create and store a key; the returned object holds the only copy of the secret."""
    pepper = await accounts.secrets.pepper()
    for _ in range(3):
        parts = new_service_key()
        record = ServiceKeyRecord(
            id=str(uuid.uuid4()),
            user_id=user_id,
            name=name,
            lookup_id=parts.lookup_id,
            prefix=parts.prefix,
            key_hash=service_key_digest(pepper, parts.secret),
            scopes=scopes,
            created_at=utc_now(),
        )
        try:
            await store.create_service_key(record)
        except AccountConflict as exc:
            if exc.field == "lookup_id":
                continue
            raise
        return ServiceKeyWithSecret(
            id=record.id,
            name=record.name,
            prefix=record.prefix,
            scopes=list(record.scopes),
            created_at=iso_utc(record.created_at),
            secret=parts.token,
        )
    raise ApiError(500, "could not allocate a unique key id")


def _check_escalation(principal: Principal, scopes: tuple[str, ...]) -> None:
    if principal.via != "key":
        return
    for scope in scopes:
        if not scope_covers(principal.scopes, scope):
            raise ApiError(403, f"this API key cannot create a key with the scope {scope!r}, which it does not hold itself")


async def list_keys(accounts: Accounts, request: Request) -> Response:
    store = accounts.require_store()
    principal = current_principal(request)
    keys = await store.list_service_keys(principal.id)
    return json_response(ServiceKeyList(keys=[key_meta(k) for k in keys]))


async def create_key(accounts: Accounts, request: Request) -> Response:
    store = accounts.require_store()
    principal = current_principal(request)
    body = await read_json(request, ServiceKeyCreate)
    name, scopes = _validate(body, known_scope_groups(request.app.state.kernel.scope_groups, request.app.routes))
    _check_escalation(principal, scopes)
    if len(await store.list_service_keys(principal.id)) >= MAX_KEYS_PER_USER:
        raise ApiError(409, f"you already have {MAX_KEYS_PER_USER} service keys; delete one first")
    created = await mint_key(accounts, store, principal.id, name, scopes)
    return json_response(created, 201)


async def delete_key(accounts: Accounts, request: Request) -> Response:
    store = accounts.require_store()
    principal = current_principal(request)
    key_id = request.path_params["key_id"]
    if not await store.delete_service_key(key_id, user_id=principal.id):
        raise ApiError(404, NOT_FOUND)
    # Sockets opened with the key close now (on every instance when a bus relays it).
    await accounts.kernel.revocations.announce(Revocation.key(key_id, principal.id))
    return Response(status_code=204)
