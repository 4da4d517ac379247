"""Profile routes: ``PUT /api/users/me/username``, ``POST /api/users/me/avatar``, ``GET /avatars/<uid>.png``."""

from __future__ import annotations

import hashlib

import anyio
import anyio.to_thread
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response

from comfytavern.auth import current_principal
from comfytavern.http import ApiError, json_response, read_json
from comfytavern.safety import UnsafeName
from comfytavern.storage.accounts import AccountConflict, UserChanges
from comfytavern_accounts.identity import check_username
from comfytavern_users.avatars import (
    AvatarRejected,
    avatar_path,
    avatar_url,
    default_avatar,
    reencode_avatar,
    write_avatar,
)
from comfytavern_users.service import Accounts
from comfytavern_users.wire import AvatarUploaded, UsernameChange, UsernameChanged

__all__ = ["AVATAR_MAX_BYTES", "change_username", "serve_avatar", "upload_avatar"]

#: Largest accepted avatar file (the original's limit).
AVATAR_MAX_BYTES = 5 * 1024 * 1024
_MULTIPART_OVERHEAD = 64 * 1024


async def change_username(accounts: Accounts, request: Request) -> Response:
    store = accounts.require_store()
    principal = current_principal(request)
    body = await read_json(request, UsernameChange)
    try:
        username = check_username(body.username)
    except ValueError as exc:
        raise ApiError(422, "validation failed", [{"path": "$.username", "message": str(exc)}]) from None
    try:
        updated = await store.update_user(principal.id, UserChanges(username=username))
    except AccountConflict as exc:
        raise ApiError(409, "this username is already taken", {"field": exc.field}) from None
    if updated is None:
        raise ApiError(404, "user not found")
    return json_response(UsernameChanged(success=True, message="用户名更新成功", username=updated.username))


async def upload_avatar(accounts: Accounts, request: Request) -> Response:
    principal = current_principal(request)
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(415, "expected a multipart/form-data body with the image in the file field 'avatar'")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > AVATAR_MAX_BYTES + _MULTIPART_OVERHEAD:
        raise ApiError(413, f"the avatar is too large (at most {AVATAR_MAX_BYTES // (1024 * 1024)} MB)")
    try:
        async with request.form(max_files=1, max_fields=8, max_part_size=64 * 1024) as form:
            item = form.get("avatar")
            if item is None:
                raise ApiError(422, "the multipart field 'avatar' (an image file) is required")
            if not isinstance(item, UploadFile):
                raise ApiError(422, "the field 'avatar' must be a file upload, not a text value")
            data = await item.read(AVATAR_MAX_BYTES + 1)
    except MultiPartException as exc:
        raise ApiError(400, f"malformed multipart body: {exc.message}") from None
    if len(data) > AVATAR_MAX_BYTES:
        raise ApiError(413, f"the avatar is too large (at most {AVATAR_MAX_BYTES // (1024 * 1024)} MB)")
    try:
        png = await anyio.to_thread.run_sync(reencode_avatar, data)
    except AvatarRejected as exc:
        raise ApiError(422, str(exc)) from None
    try:
        await write_avatar(accounts, principal.id, png)
    except UnsafeName:
        raise ApiError(400, "this user id cannot have an avatar file") from None
    return json_response(
        AvatarUploaded(success=True, message="头像上传成功", avatar_url=await avatar_url(accounts, principal.id))
    )


async def serve_avatar(accounts: Accounts, request: Request) -> Response:
    """Your own avatar (administrators: anyone's); other people's are 404 so ids do not leak."""
    principal = current_principal(request)
    name: str = request.path_params["filename"]
    uid = name[: -len(".png")] if name.endswith(".png") else ""
    if not uid or (uid != principal.id and not principal.is_admin):
        raise ApiError(404, "avatar not found")
    try:
        path = avatar_path(accounts, uid)
    except UnsafeName:
        raise ApiError(404, "avatar not found") from None
    try:
        data = await anyio.Path(path).read_bytes()
    except OSError:
        if accounts.store is not None and uid != principal.id and await accounts.store.get_user(uid) is None:
            raise ApiError(404, "avatar not found") from None
        data = await anyio.to_thread.run_sync(default_avatar, uid)
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": 'inline; filename="avatar.png"',
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/png", headers=headers)
