"""``GET /api/auth/current``: the editor's ``UserContext`` for the configured mode and the caller."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from comfytavern.auth import AuthStatus, AuthStatusProvider, optional_principal
from comfytavern.http import json_response
from comfytavern.storage.accounts import iso_utc
from comfytavern_users.avatars import avatar_url
from comfytavern_users.service import Accounts
from comfytavern_users.wire import MultiUserContext, SingleUserContext, UserIdentity, credential_meta, key_meta

__all__ = ["current_context"]

#: ``createdAt`` of the fixed local user when there is no accounts store to remember it.
_PROCESS_START = datetime.fromtimestamp(time.time(), UTC)


async def _identity(accounts: Accounts, request: Request) -> UserIdentity | None:
    principal = optional_principal(request)
    if principal is None:
        return None
    store = accounts.store
    if store is None:
        return UserIdentity(
            uid=principal.id,
            id=principal.id,
            username=principal.username,
            is_admin=principal.is_admin,
            created_at=iso_utc(_PROCESS_START),
            avatar_url=await avatar_url(accounts, principal.id),
            service_api_keys=[],
            external_credentials=[],
        )
    user = await store.get_user(principal.id)
    if user is None:
        return None
    keys = await store.list_service_keys(user.id)
    credentials = await store.list_credentials(user.id)
    return UserIdentity(
        uid=user.id,
        id=user.id,
        username=user.username,
        is_admin=user.is_admin,
        created_at=iso_utc(user.created_at),
        avatar_url=await avatar_url(accounts, user.id),
        service_api_keys=[key_meta(k) for k in keys],
        external_credentials=[credential_meta(c) for c in credentials],
    )


async def current_context(accounts: Accounts, request: Request) -> Response:
    backend = accounts.kernel.auth
    status = await backend.status() if isinstance(backend, AuthStatusProvider) else AuthStatus()
    identity = await _identity(accounts, request)
    principal = optional_principal(request)
    if status.multi_user:
        return json_response(
            MultiUserContext(
                multi_user_mode=True,
                is_authenticated=identity is not None,
                current_user=identity,
                admin_registration_required=status.admin_registration_required or None,
                registration_open=status.registration_open,
            )
        )
    return json_response(
        SingleUserContext(
            multi_user_mode=False,
            access_password_required=status.password_required,
            is_authenticated=identity is not None,
            current_user=identity,
            is_authenticated_with_global_password=(
                (identity is not None and principal is not None and principal.via == "session")
                if status.password_required
                else None
            ),
            global_password_setup_required=status.password_setup_required or None,
        )
    )
