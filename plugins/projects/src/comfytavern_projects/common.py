"""What every project and workflow handler needs: the caller's store and id, validated path ids
and bodies, and one mapping from storage errors to HTTP statuses."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request

from comfytavern import ApiError, current_principal, read_json
from comfytavern.safety import UnsafeName
from comfytavern.storage import StorageNotConfigured
from comfytavern.storage.projects import (
    AlreadyExists,
    ProjectNotFound,
    ProjectStore,
    WorkflowNotFound,
    check_id,
    derive_id,
)

__all__ = [
    "body_id",
    "body_name_id",
    "etag_of",
    "owner_id",
    "path_id",
    "read_document",
    "store_errors",
    "store_of",
]

S = TypeVar("S")


def store_of(request: Request) -> ProjectStore:
    """The configured projects store (503 when ``storage.projects`` is empty)."""
    try:
        return request.app.state.kernel.storage.projects
    except StorageNotConfigured as exc:
        raise ApiError(503, str(exc)) from None


def owner_id(request: Request) -> str:
    """Everything is scoped to the authenticated caller; never to an id taken from the request."""
    user_id = current_principal(request).id
    try:
        return check_id(user_id, what="user id")
    except UnsafeName:
        # An auth mode handed out an id that cannot name a folder: a server-side fault.
        raise ApiError(500, "the signed-in user's id cannot be used as a data folder name") from None


def path_id(request: Request, param: str, what: str) -> str:
    """A path parameter (decoded once by the route) that must be a valid id, else 400."""
    value = request.path_params[param]
    try:
        return check_id(value, what=what)
    except UnsafeName as exc:
        raise ApiError(400, f"invalid {what}", [{"path": param, "message": str(exc)}]) from None


def body_id(value: str, what: str, *, field: str) -> str:
    """An id given in a body, used exactly as sent: 400 unless it is a valid id."""
    try:
        return check_id(value, what=what)
    except UnsafeName as exc:
        raise ApiError(400, f"invalid {what}", [{"path": field, "message": str(exc)}]) from None


def body_name_id(name: str, what: str, *, field: str = "$.name") -> str:
    """The id (or file stem) derived from a name in a body: 422 if blank, 400 if unsafe."""
    if not name.strip():
        raise ApiError(422, "validation failed", [{"path": field, "message": f"{what} must not be blank"}])
    try:
        return derive_id(name, what=what)
    except UnsafeName as exc:
        raise ApiError(400, f"invalid {what}", [{"path": field, "message": str(exc)}]) from None


async def read_document(request: Request, schema: type[S]) -> tuple[dict[str, Any], S]:
    """The body as the raw JSON object (what gets stored) and validated against ``schema``.

    400 for malformed JSON, 422 with the field path when a known field has the wrong shape.
    """
    raw: dict[str, Any] = await read_json(request, dict[str, Any])
    try:
        return raw, msgspec.convert(raw, schema)
    except msgspec.ValidationError as exc:
        message, path = str(exc), "$"
        if " - at `" in message:
            message, _, rest = message.rpartition(" - at `")
            path = rest.rstrip("`")
        raise ApiError(422, "validation failed", [{"path": path, "message": message}]) from None


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Storage errors as HTTP errors: missing 404, taken 409, impossible id 400."""
    try:
        yield
    except (ProjectNotFound, WorkflowNotFound) as exc:
        raise ApiError(404, _sentence(exc)) from None
    except AlreadyExists as exc:
        raise ApiError(409, _sentence(exc)) from None
    except UnsafeName as exc:
        raise ApiError(400, _sentence(exc)) from None


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def etag_of(doc: dict[str, Any]) -> str:
    """A strong ETag of a stored document (same bytes in, same tag out)."""
    return '"' + hashlib.blake2b(msgspec.json.encode(doc), digest_size=16).hexdigest() + '"'
