"""Builders for test cards: real PNGs made with Pillow, with card chunks placed and encoded as asked.

For tests of the card reader, the characters plugin and node packs (Pillow is needed here only)::

    from comfytavern_cards.testing import card_png, v2_card

    data = card_png([("chara", v2_card("Alice"))])
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

__all__ = [
    "chunk",
    "card_png",
    "insert_chunks",
    "plain_png",
    "text_chunk",
    "v1_card",
    "v2_card",
    "v3_card",
]

ChunkKind = Literal["tEXt", "zTXt", "iTXt", "iTXt-z"]


def v1_card(name: str, **fields: Any) -> dict[str, Any]:
    base = {"name": name, "description": "", "personality": "", "scenario": "", "first_mes": "", "mes_example": ""}
    return {**base, **fields}


def v2_card(name: str, **data: Any) -> dict[str, Any]:
    body = {**v1_card(name), "creator_notes": "", "system_prompt": "", "post_history_instructions": ""}
    body.update({"alternate_greetings": [], "tags": [], "creator": "", "character_version": "", "extensions": {}})
    body.update(data)
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": body}


def v3_card(name: str, **data: Any) -> dict[str, Any]:
    card = v2_card(name, group_only_greetings=[], **data)
    card.update(spec="chara_card_v3", spec_version="3.0")
    return card


def chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def _value(card: Any) -> str:
    if isinstance(card, str):
        return card
    return base64.b64encode(msgspec.json.encode(card)).decode("ascii")


def text_chunk(keyword: str, card: Any, kind: ChunkKind = "tEXt") -> bytes:
    """One text chunk holding ``card`` (a dict is base64-encoded JSON; a str is used as is)."""
    key = keyword.encode("latin-1") + b"\x00"
    value = _value(card)
    if kind == "tEXt":
        return chunk(b"tEXt", key + value.encode("latin-1"))
    if kind == "zTXt":
        return chunk(b"zTXt", key + b"\x00" + zlib.compress(value.encode("latin-1")))
    compressed = kind == "iTXt-z"
    body = zlib.compress(value.encode("utf-8")) if compressed else value.encode("utf-8")
    return chunk(b"iTXt", key + bytes([1 if compressed else 0, 0]) + b"\x00\x00" + body)


def plain_png(size: tuple[int, int] = (8, 12), color: tuple[int, int, int] = (180, 40, 90)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def insert_chunks(png: bytes, chunks: Sequence[bytes], *, where: Literal["before_idat", "before_iend"]) -> bytes:
    """Insert raw chunks before the first ``IDAT`` (where Pillow writes text) or before ``IEND``."""
    marker = b"IDAT" if where == "before_idat" else b"IEND"
    pos = 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        if png[pos + 4 : pos + 8] == marker:
            return png[:pos] + b"".join(chunks) + png[pos:]
        pos += 12 + length
    raise ValueError(f"no {marker.decode()} chunk")


def card_png(
    cards: Sequence[tuple[str, Any]],
    *,
    kind: ChunkKind = "tEXt",
    where: Literal["before_idat", "before_iend"] = "before_iend",
    size: tuple[int, int] = (8, 12),
) -> bytes:
    """A real PNG with one text chunk per ``(keyword, card)``, in order."""
    return insert_chunks(plain_png(size), [text_chunk(k, c, kind) for k, c in cards], where=where)
