"""The ``/api/characters`` routes: list, image, import, one card, export.

Every route works on the caller's own library (``principal.id``); names from the URL are
validated with :func:`comfytavern.safety.check_name` and rejected (400), never rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute

from comfytavern import ApiError, current_principal, json_response, route
from comfytavern.safety import UnsafeName, check_name, resolve_inside
from comfytavern_characters.images import IMAGE_TYPES, sniff_image
from comfytavern_characters.library import IMAGE_EXTS, CharacterLibrary, ImportError_, entry_for
from comfytavern_characters.wire import CardImportQuery, CardUploadForm, CharacterDetail, CharacterList, EntryResponse

__all__ = ["build_routes"]

TAGS = ["characters"]
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-cache"}
_FORM_LIMITS: dict[str, Any] = {"max_files": 1, "max_fields": 8, "max_part_size": 64 * 1024}
#: A minimal V2 card, the request example of the import route.
_EXAMPLE_CARD: dict[str, Any] = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {"name": "Seraphina", "description": "A guardian of the forest.", "tags": ["fantasy"], "extensions": {}},
}


def _safe(value: str, what: str) -> str:
    try:
        return check_name(value, what=what)
    except UnsafeName as exc:
        raise ApiError(400, f"invalid {what}", str(exc)) from None


def _disposition(filename: str) -> str:
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _probe(path: Path) -> tuple[os.stat_result, bytes] | None:
    try:
        stat = os.lstat(path)
        if not os.path.isfile(path) or os.path.islink(path):
            return None
        with open(path, "rb") as fh:
            return stat, fh.read(16)
    except (FileNotFoundError, NotADirectoryError):
        return None


async def _read_upload(request: Request, limit: int) -> tuple[bytes, str | None]:
    """The uploaded card bytes and an optional requested file stem (``name``)."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    name = request.query_params.get("name")
    if content_type == "multipart/form-data":
        async with request.form(**_FORM_LIMITS) as form:
            upload = form.get("file") or form.get("avatar")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "the form has no card file (field 'file')")
            if upload.size is not None and upload.size > limit:
                raise ApiError(413, f"the card is larger than {limit} bytes")
            data = await upload.read(limit + 1)
            form_name = form.get("name")
            if isinstance(form_name, str) and form_name.strip():
                name = form_name
    elif content_type in ("image/png", "application/json", "application/octet-stream"):
        data = await request.body()
    else:
        raise ApiError(
            415,
            "unsupported upload type",
            "send multipart/form-data with a 'file' field, or a raw image/png or application/json body",
        )
    if len(data) > limit:
        raise ApiError(413, f"the card is larger than {limit} bytes")
    if not data:
        raise ApiError(400, "the uploaded card is empty")
    return data, name


def build_routes(library: CharacterLibrary) -> list[BaseRoute]:
    async def list_characters(request: Request) -> Response:
        principal = current_principal(request)
        entries, skipped = await anyio.to_thread.run_sync(library.scan, principal.id)
        return json_response(CharacterList(True, entries, skipped), headers={"Cache-Control": "no-store"})

    async def character_image(request: Request) -> Response:
        principal = current_principal(request)
        name = _safe(request.path_params["imageName"], "image name")
        if os.path.splitext(name)[1].lower() not in IMAGE_EXTS:
            raise ApiError(415, "unsupported image format", {"supported": sorted(IMAGE_EXTS)})
        try:
            path = resolve_inside(library.directory(principal.id), name)
        except UnsafeName as exc:
            raise ApiError(400, "invalid image name", str(exc)) from None
        probe = await anyio.to_thread.run_sync(_probe, path)
        if probe is None:
            raise ApiError(404, f"image {name!r} not found")
        stat, head = probe
        kind = sniff_image(head)
        if kind is None:
            raise ApiError(415, "the file is not a supported image (PNG, JPEG, WebP or GIF)")
        return FileResponse(path, media_type=IMAGE_TYPES[kind], headers=_SECURITY_HEADERS, stat_result=stat)

    async def import_character(request: Request) -> Response:
        principal = current_principal(request)
        data, name = await _read_upload(request, library.settings.max_upload_bytes)
        stem = _safe(name, "card name") if name is not None else None
        try:
            entry = await anyio.to_thread.run_sync(library.import_card, principal.id, data, stem)
        except ImportError_ as exc:
            raise ApiError(exc.status, str(exc)) from None
        return json_response(EntryResponse(True, entry), status=201)

    async def get_character(request: Request) -> Response:
        principal = current_principal(request)
        card_id = _safe(request.path_params["characterId"], "character id")
        found = await anyio.to_thread.run_sync(library.find, principal.id, card_id)
        if found is None:
            raise ApiError(404, f"character {card_id!r} not found")
        files, card = found
        image = files.image()
        entry = entry_for(card, files.stem, image.name if image else None)
        return json_response(CharacterDetail(True, entry, card.to_v3()))

    async def export_character(request: Request) -> Response:
        principal = current_principal(request)
        card_id = _safe(request.path_params["characterId"], "character id")
        fmt = request.query_params.get("format", "png").lower()
        if fmt not in ("png", "json"):
            raise ApiError(400, "format must be 'png' or 'json'")
        found = await anyio.to_thread.run_sync(library.find, principal.id, card_id)
        if found is None:
            raise ApiError(404, f"character {card_id!r} not found")
        files, card = found
        if fmt == "json":
            return json_response(card.to_v2(), headers={"Content-Disposition": _disposition(f"{card_id}.json")})
        try:
            png = await anyio.to_thread.run_sync(library.export_png, files, card)
        except ImportError_ as exc:
            raise ApiError(exc.status, str(exc)) from None
        headers = {**_SECURITY_HEADERS, "Content-Disposition": _disposition(f"{card_id}.png")}
        return Response(png, media_type="image/png", headers=headers)

    common: dict[str, Any] = {"tags": TAGS, "auth": "user", "scope": "characters"}
    return [
        route(
            "/api/characters",
            list_characters,
            summary="The caller's character cards (ApiCharacterEntry[]) and the files skipped, with reasons",
            response=CharacterList,
            **common,
        ),
        route(
            "/api/characters/image/{imageName:path}",
            character_image,
            summary="A card image from the caller's library (PNG, JPEG, WebP, GIF; 400/404/415)",
            content_type="image/*",
            responses={400: "invalid image name", 404: "no such image", 415: "not a supported image"},
            **common,
        ),
        route(
            "/api/characters/import",
            import_character,
            methods=["POST"],
            summary="Import a SillyTavern card (PNG or JSON, V1-V3): validated, cleaned, stored",
            status=201,
            body=CardUploadForm,
            body_content_type="multipart/form-data",
            body_alternatives={"image/png": bytes, "application/json": dict[str, Any], "application/octet-stream": bytes},
            body_examples={"application/json": _EXAMPLE_CARD},
            query=CardImportQuery,
            response=EntryResponse,
            responses={
                400: "bad upload or unsafe name",
                409: "name taken",
                413: "too large",
                415: "bad type",
                422: "not a card, or a field of the wrong type",
            },
            **common,
        ),
        route(
            "/api/characters/{characterId}",
            get_character,
            summary="One card: its entry and the whole card as a V3 object",
            response=CharacterDetail,
            responses={400: "invalid id", 404: "no such card"},
            **common,
        ),
        route(
            "/api/characters/{characterId}/export",
            export_character,
            summary="Export a card: ?format=png (chara V2 + ccv3 V3 chunks, default) or json (V2 object)",
            content_type="image/png",
            responses={400: "invalid id or format", 404: "no such card"},
            **common,
        ),
    ]
