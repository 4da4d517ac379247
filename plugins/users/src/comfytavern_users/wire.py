"""Wire formats of the account routes, exactly as the ComfyTavern editor reads them."""

from __future__ import annotations

import msgspec

from comfytavern.storage.accounts import CredentialRecord, DisplayHint, ServiceKeyRecord, iso_utc

__all__ = [
    "AvatarForm",
    "AvatarUploaded",
    "CredentialCreate",
    "CredentialList",
    "CredentialMeta",
    "MultiUserContext",
    "ServiceKeyCreate",
    "ServiceKeyList",
    "ServiceKeyMeta",
    "ServiceKeyWithSecret",
    "SingleUserContext",
    "UserContext",
    "UserIdentity",
    "UsernameChange",
    "UsernameChanged",
    "credential_meta",
    "key_meta",
]


class _Wire(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    pass


class ServiceKeyMeta(_Wire, kw_only=True, frozen=True):
    id: str
    name: str | None = None
    prefix: str
    scopes: list[str]
    created_at: str
    last_used_at: str | None = None


class ServiceKeyWithSecret(ServiceKeyMeta, kw_only=True, frozen=True):
    #: The full key (``ctsk_<id>_<secret>``); returned only by the create call.
    secret: str


class ServiceKeyList(_Wire, kw_only=True, frozen=True):
    keys: list[ServiceKeyMeta]


class ServiceKeyCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str | None = None
    #: Default ``["*"]`` (everything the owner may do); see docs/auth.md for the scope names.
    scopes: list[str] | None = None


class CredentialMeta(_Wire, kw_only=True, frozen=True):
    id: str
    service_name: str
    display_name: str | None = None
    display_hint: DisplayHint | None = None
    created_at: str


class CredentialList(_Wire, kw_only=True, frozen=True):
    credentials: list[CredentialMeta]


class CredentialCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    service_name: str
    credential: str
    display_name: str | None = None


class UserIdentity(_Wire, kw_only=True, frozen=True):
    uid: str
    #: Same as ``uid`` (some editor versions read ``id``).
    id: str
    username: str
    is_admin: bool
    created_at: str
    avatar_url: str | None = None
    service_api_keys: list[ServiceKeyMeta]
    external_credentials: list[CredentialMeta]


class SingleUserContext(_Wire, kw_only=True, frozen=True, tag_field="mode", tag="SingleUser"):
    """``mode: "SingleUser"`` (the tag): the ``local`` and ``local-password`` modes."""

    multi_user_mode: bool
    access_password_required: bool
    is_authenticated: bool
    current_user: UserIdentity | None
    #: ``local-password`` only: logged in with the access password.
    is_authenticated_with_global_password: bool | None = None
    #: ``local-password`` only: no password set yet (first run).
    global_password_setup_required: bool | None = None


class MultiUserContext(_Wire, kw_only=True, frozen=True, tag_field="mode", tag="MultiUser"):
    """``mode: "MultiUser"`` (the tag): the ``multi-user`` mode."""

    multi_user_mode: bool
    is_authenticated: bool
    current_user: UserIdentity | None
    #: No account exists yet: the first registration creates the administrator.
    admin_registration_required: bool | None = None
    registration_open: bool | None = None


#: ``GET /api/auth/current``: one of the two, told apart by ``mode``.
UserContext = SingleUserContext | MultiUserContext


class UsernameChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    username: str


class UsernameChanged(_Wire, kw_only=True, frozen=True):
    success: bool
    message: str
    username: str


class AvatarForm(msgspec.Struct):
    """The ``multipart/form-data`` body of ``POST /api/users/me/avatar`` (documentation only)."""

    #: The image file (PNG, JPEG, GIF or WebP).
    avatar: bytes


class AvatarUploaded(_Wire, kw_only=True, frozen=True):
    success: bool
    message: str
    avatar_url: str


def key_meta(key: ServiceKeyRecord) -> ServiceKeyMeta:
    return ServiceKeyMeta(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=list(key.scopes),
        created_at=iso_utc(key.created_at),
        last_used_at=None if key.last_used_at is None else iso_utc(key.last_used_at),
    )


def credential_meta(credential: CredentialRecord) -> CredentialMeta:
    return CredentialMeta(
        id=credential.id,
        service_name=credential.service_name,
        display_name=credential.display_name,
        display_hint=credential.display_hint,
        created_at=iso_utc(credential.created_at),
    )
