"""``/api/users/me/credentials``: a user's secrets for external services, encrypted at rest.

The plaintext goes in once (create) and never comes back out of any route: listings carry the
service name, the display name and a short hint. Nodes read it through ``ctx.credential(name)``.
"""

from __future__ import annotations

import unicodedata
import uuid

from starlette.requests import Request
from starlette.responses import Response

from comfytavern.auth import current_principal
from comfytavern.http import ApiError, json_response, read_json
from comfytavern.storage.accounts import CredentialRecord, DisplayHint, utc_now
from comfytavern_accounts.secrets import KeyringError
from comfytavern_users.service import Accounts
from comfytavern_users.wire import CredentialCreate, CredentialList, credential_meta

__all__ = ["create_credential", "delete_credential", "display_hint", "list_credentials"]

MAX_CREDENTIALS_PER_USER = 200
MAX_SECRET_CHARS = 16384
NOT_FOUND = "External Service Credential not found or access denied."


def display_hint(secret: str) -> DisplayHint | None:
    """Enough to recognise a key, never more than half of it (nothing for short secrets)."""
    if len(secret) >= 16:
        return DisplayHint(prefix=secret[:4], suffix=secret[-4:])
    if len(secret) > 8:
        return DisplayHint(prefix=secret[:2], suffix=secret[-2:])
    return None


def _field_error(path: str, message: str) -> ApiError:
    return ApiError(422, "validation failed", [{"path": path, "message": message}])


def _text(value: str, path: str, *, max_len: int) -> str:
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        raise _field_error(path, "must not be empty")
    if len(text) > max_len:
        raise _field_error(path, f"must be at most {max_len} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise _field_error(path, "must not contain control characters")
    return text


async def list_credentials(accounts: Accounts, request: Request) -> Response:
    store = accounts.require_store()
    principal = current_principal(request)
    rows = await store.list_credentials(principal.id)
    return json_response(CredentialList(credentials=[credential_meta(c) for c in rows]))


async def create_credential(accounts: Accounts, request: Request) -> Response:
    store = accounts.require_store()
    principal = current_principal(request)
    body = await read_json(request, CredentialCreate)
    service = _text(body.service_name, "$.serviceName", max_len=100)
    display = None if body.display_name is None else _text(body.display_name, "$.displayName", max_len=100)
    secret = body.credential.strip()
    if not secret:
        raise _field_error("$.credential", "must not be empty")
    if len(secret) > MAX_SECRET_CHARS:
        raise _field_error("$.credential", f"must be at most {MAX_SECRET_CHARS} characters")
    if len(await store.list_credentials(principal.id)) >= MAX_CREDENTIALS_PER_USER:
        raise ApiError(409, f"you already have {MAX_CREDENTIALS_PER_USER} credentials; delete one first")
    record_id = str(uuid.uuid4())
    try:
        ciphertext = await accounts.encrypt(secret, user_id=principal.id, record_id=record_id, service=service)
    except KeyringError as exc:
        raise ApiError(503, f"credential encryption is unavailable: {exc}") from None
    record = CredentialRecord(
        id=record_id,
        user_id=principal.id,
        service_name=service,
        display_name=display,
        display_hint=display_hint(secret),
        ciphertext=ciphertext,
        created_at=utc_now(),
    )
    await store.create_credential(record)
    return json_response(credential_meta(record), 201)


async def delete_credential(accounts: Accounts, request: Request) -> Response:
    store = accounts.require_store()
    principal = current_principal(request)
    if not await store.delete_credential(request.path_params["credential_id"], user_id=principal.id):
        raise ApiError(404, NOT_FOUND)
    return Response(status_code=204)
