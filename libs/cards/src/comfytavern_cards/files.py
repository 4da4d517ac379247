"""Reading a card from a PNG or JSON file and writing one into a PNG: the entry points plugins use.

Everything here is synchronous and bounded; call it through ``anyio.to_thread.run_sync`` from
async code. Files are streamed through the chunk walker, so a 30 MB card costs a few seeks.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Literal

from comfytavern_cards.codec import MAX_CARD_JSON_BYTES, decode_card_json, decode_card_text, encode_card_text
from comfytavern_cards.errors import CardTooLargeError, InvalidCardError
from comfytavern_cards.model import CharacterCard, parse_card
from comfytavern_cards.png import DEFAULT_LIMITS, PngLimits, embed_text_chunks, find_card_chunk, is_png

__all__ = [
    "CardKind",
    "card_kind",
    "read_card_bytes",
    "read_card_path",
    "read_json_card",
    "read_png_card",
    "write_card_png",
]

CardKind = Literal["png", "json"]


def card_kind(head: bytes) -> CardKind | None:
    """``png`` or ``json`` from the first bytes of a file (never from its name)."""
    if is_png(head):
        return "png"
    stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if stripped.startswith(b"{"):
        return "json"
    return None


def read_png_card(stream: BinaryIO, *, limits: PngLimits = DEFAULT_LIMITS, strict: bool = False) -> CharacterCard:
    """The card embedded in a PNG: the first ``ccv3`` chunk, else the first ``chara``.

    ``strict`` refuses fields of the wrong type (see :func:`comfytavern_cards.parse_card`)."""
    chunk = find_card_chunk(stream, limits=limits)
    value = decode_card_text(
        chunk.text,
        latin1=chunk.chunk_type != "iTXt",
        max_bytes=min(MAX_CARD_JSON_BYTES, limits.max_text_chunk_bytes),
    )
    return parse_card(value, strict=strict)


def read_json_card(raw: bytes, *, max_bytes: int = MAX_CARD_JSON_BYTES, strict: bool = False) -> CharacterCard:
    return parse_card(decode_card_json(raw, max_bytes=max_bytes), strict=strict)


def read_card_bytes(
    data: bytes, *, limits: PngLimits = DEFAULT_LIMITS, strict: bool = False
) -> tuple[CharacterCard, CardKind]:
    """A card from an uploaded file's bytes, PNG or JSON, decided by content (``strict`` for
    uploads: fields of the wrong type are refused, not coerced)."""
    kind = card_kind(data[:64])
    if kind == "png":
        return read_png_card(io.BytesIO(data), limits=limits, strict=strict), kind
    if kind == "json":
        max_bytes = min(MAX_CARD_JSON_BYTES, limits.max_text_bytes)
        return read_json_card(data, max_bytes=max_bytes, strict=strict), kind
    raise InvalidCardError("not a character card: expected a PNG image or a JSON object")


def read_card_path(path: Path, *, limits: PngLimits = DEFAULT_LIMITS) -> tuple[CharacterCard, CardKind]:
    """A card from a file on disk; PNGs are walked in place, never loaded whole."""
    with path.open("rb") as fh:
        head = fh.read(64)
        kind = card_kind(head)
        if kind == "png":
            fh.seek(0)
            return read_png_card(fh, limits=limits), kind
        if kind == "json":
            ceiling = min(MAX_CARD_JSON_BYTES, limits.max_text_bytes)
            fh.seek(0)
            raw = fh.read(ceiling + 1)
            if len(raw) > ceiling:
                raise CardTooLargeError(f"the card JSON is larger than {ceiling} bytes")
            return read_json_card(raw, max_bytes=ceiling), kind
    raise InvalidCardError("not a character card: expected a PNG image or a JSON object")


def write_card_png(png: bytes, card: CharacterCard) -> bytes:
    """``png`` carrying ``card`` as SillyTavern writes it: ``chara`` (V2) then ``ccv3`` (V3).

    Old ``chara``/``ccv3`` chunks of any kind are removed first; pixels are not touched.
    """
    return embed_text_chunks(
        png,
        [("chara", encode_card_text(card.to_v2())), ("ccv3", encode_card_text(card.to_v3()))],
    )
