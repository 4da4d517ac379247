"""Wire formats of the character routes (the editor reads ``ApiCharacterEntry``)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

__all__ = [
    "ApiCharacterEntry",
    "CardImportQuery",
    "CardUploadForm",
    "CharacterDetail",
    "CharacterList",
    "EntryResponse",
    "SkippedFile",
]


class ApiCharacterEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One card in the library. ``imageName``, ``tags`` and ``favorite`` are always present.

    ``id`` is the file stem shared by the card's files (``Alice`` for ``Alice.png`` and
    ``Alice.json``): stable across listings, unlike the original's ``<name>_<index>``.
    """

    id: str
    name: str
    image_name: str | None = msgspec.field(name="imageName")
    tags: list[str]
    favorite: bool
    description: str | None = None
    creator: str | None = None
    creator_comment: str | None = msgspec.field(default=None, name="creatorComment")
    create_date: str | None = msgspec.field(default=None, name="createDate")
    character_version: str | None = msgspec.field(default=None, name="characterVersion")
    talkativeness: str | None = None
    avatar: str | None = None
    chat: str | None = None


class SkippedFile(msgspec.Struct):
    """A library file that is not listed, and why (also logged once per file version)."""

    file: str
    reason: str


class CharacterList(msgspec.Struct):
    success: bool
    data: list[ApiCharacterEntry]
    skipped: list[SkippedFile]


class EntryResponse(msgspec.Struct):
    success: bool
    data: ApiCharacterEntry


class CharacterDetail(msgspec.Struct):
    """``GET /api/characters/{id}``: the entry plus the whole card as a V3 object."""

    success: bool
    data: ApiCharacterEntry
    card: dict[str, Any]


class CardUploadForm(msgspec.Struct):
    """The ``multipart/form-data`` body of ``POST /api/characters/import`` (documentation only;
    SillyTavern's field name ``avatar`` is accepted for the file too)."""

    #: The card: a PNG with card data, or a JSON card.
    file: bytes
    #: The file stem to store it under (default: derived from the card name).
    name: str | msgspec.UnsetType = msgspec.UNSET


class CardImportQuery(msgspec.Struct):
    """Query of ``POST /api/characters/import``."""

    #: The file stem to store the card under, for raw (non-multipart) bodies.
    name: Annotated[str, msgspec.Meta(min_length=1)] | msgspec.UnsetType = msgspec.UNSET
