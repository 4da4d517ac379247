"""Turning a card chunk's text into JSON and back.

Readers in the wild are lenient (SillyTavern decodes base64 with Node's forgiving decoder and
bad UTF-8 becomes U+FFFD), and some tools write raw JSON instead of base64; we accept both so a
card that works in SillyTavern works here.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from comfytavern.http import JsonTooDeep, decode_json
from comfytavern_cards.errors import CardTooLargeError, InvalidCardError

__all__ = ["MAX_CARD_JSON_BYTES", "decode_card_json", "decode_card_text", "encode_card_text"]

#: Ceiling for one card's JSON text (cards with embedded lorebooks reach a few MiB).
MAX_CARD_JSON_BYTES = 16 * 1024 * 1024

_encoder = msgspec.json.Encoder()


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    compact = "".join(text.split())
    padded = compact + "=" * (-len(compact) % 4)
    for alphabet in ("standard", "urlsafe"):
        try:
            if alphabet == "standard":
                return base64.b64decode(padded, validate=True)
            return base64.urlsafe_b64decode(padded.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
    raise InvalidCardError("the card chunk is neither base64 nor JSON")


def decode_card_json(raw: bytes, *, max_bytes: int = MAX_CARD_JSON_BYTES) -> Any:
    """Parse JSON bytes (UTF-8, BOM tolerated) with a size ceiling."""
    if len(raw) > max_bytes:
        raise CardTooLargeError(f"the card JSON is {len(raw)} bytes (limit {max_bytes})")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return decode_json(raw, what="character card")
    except JsonTooDeep as exc:
        raise InvalidCardError(f"the card JSON is nested too deeply ({exc})") from None
    except msgspec.DecodeError as exc:
        try:
            text = raw.decode("utf-8", errors="replace").encode("utf-8")
            if text != raw:
                return decode_json(text, what="character card")
        except msgspec.DecodeError:
            pass
        raise InvalidCardError(f"the card is not valid JSON: {exc}") from None


def decode_card_text(text: str, *, latin1: bool = True, max_bytes: int = MAX_CARD_JSON_BYTES) -> Any:
    """A ``chara``/``ccv3`` value (base64 of UTF-8 JSON, or raw JSON) to a Python value.

    ``latin1`` says the text came from ``tEXt``/``zTXt`` (bytes decoded as Latin-1), so raw JSON is
    turned back into its original bytes before the UTF-8 decode.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            raw = stripped.encode("latin-1") if latin1 else stripped.encode("utf-8")
        except UnicodeEncodeError:
            raw = stripped.encode("utf-8")
        return decode_card_json(raw, max_bytes=max_bytes)
    if len(stripped) > max_bytes * 4 // 3 + 4:
        raise CardTooLargeError(f"the card chunk is larger than {max_bytes} bytes of JSON")
    return decode_card_json(_b64(stripped), max_bytes=max_bytes)


def encode_card_text(card: Any) -> str:
    """base64 of the UTF-8 JSON, the form every card reader accepts."""
    return base64.b64encode(_encoder.encode(card)).decode("ascii")
