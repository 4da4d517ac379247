"""Character cards (SillyTavern V1/V2/V3): safe reading from PNG/JSON and writing into PNG.

Shared by the characters plugin (library, import, export) and the tavern node pack (the card
loader), so it lives in the kernel::

    from comfytavern_cards import read_card_path, write_card_png, CardError

    card, kind = read_card_path(path)      # kind is "png" or "json"
    card.data["name"], card.to_v2(), card.to_v3()
    png_with_card = write_card_png(png_bytes, card)
"""

from comfytavern_cards.codec import MAX_CARD_JSON_BYTES, decode_card_json, decode_card_text, encode_card_text
from comfytavern_cards.errors import (
    CardError,
    CardTooLargeError,
    InvalidCardError,
    NoCardDataError,
    NotPngError,
    PngStructureError,
)
from comfytavern_cards.files import (
    CardKind,
    card_kind,
    read_card_bytes,
    read_card_path,
    read_json_card,
    read_png_card,
    write_card_png,
)
from comfytavern_cards.library import (
    SETTINGS_KEY,
    CardLibrarySettings,
    card_library_dir,
    card_library_settings,
    user_data_dir,
)
from comfytavern_cards.model import V1_FIELDS, CharacterCard, parse_card
from comfytavern_cards.png import (
    CARD_KEYWORDS,
    PNG_SIGNATURE,
    PngLimits,
    TextChunk,
    WalkReport,
    embed_text_chunks,
    find_card_chunk,
    is_png,
    walk_text_chunks,
)

__all__ = [
    "CARD_KEYWORDS",
    "MAX_CARD_JSON_BYTES",
    "PNG_SIGNATURE",
    "SETTINGS_KEY",
    "V1_FIELDS",
    "CardError",
    "CardKind",
    "CardLibrarySettings",
    "CardTooLargeError",
    "CharacterCard",
    "InvalidCardError",
    "NoCardDataError",
    "NotPngError",
    "PngLimits",
    "PngStructureError",
    "TextChunk",
    "WalkReport",
    "card_kind",
    "card_library_dir",
    "card_library_settings",
    "decode_card_json",
    "decode_card_text",
    "embed_text_chunks",
    "encode_card_text",
    "find_card_chunk",
    "is_png",
    "parse_card",
    "read_card_bytes",
    "read_card_path",
    "read_json_card",
    "read_png_card",
    "user_data_dir",
    "walk_text_chunks",
    "write_card_png",
]
