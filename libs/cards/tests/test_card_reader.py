"""The card reader against real PNGs built with Pillow: every version, chunk kind and placement."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

from comfytavern_cards import (
    CardTooLargeError,
    InvalidCardError,
    NoCardDataError,
    NotPngError,
    PngLimits,
    PngStructureError,
    read_card_bytes,
    read_card_path,
    read_png_card,
    walk_text_chunks,
    write_card_png,
)
from comfytavern_cards.testing import card_png, chunk, insert_chunks, plain_png, text_chunk, v1_card, v2_card, v3_card


def read(data: bytes):
    return read_png_card(io.BytesIO(data))


def test_v1_card_in_chara_chunk() -> None:
    card = read(card_png([("chara", v1_card("Seraphina", description="guardian", first_mes="Hi"))]))
    assert card.version == 1 and card.source_format == "v1"
    assert card.data["name"] == "Seraphina"
    assert card.data["description"] == "guardian"
    assert card.data["first_mes"] == "Hi"
    assert card.data["alternate_greetings"] == [] and card.data["extensions"] == {}


def test_v2_card_keeps_unknown_fields_through_export() -> None:
    original = v2_card("Alice", extensions={"agnai/voice": {"id": 3}}, custom_field=[1, 2])
    original["top_level_extra"] = {"x": "y"}
    card = read(card_png([("chara", original)]))
    assert card.version == 2
    assert card.data["custom_field"] == [1, 2]
    exported = read(write_card_png(plain_png(), card))
    assert exported.version == 3  # ccv3 is preferred on the way back in
    assert exported.raw["top_level_extra"] == {"x": "y"}
    assert exported.data["extensions"] == {"agnai/voice": {"id": 3}}
    assert exported.data["custom_field"] == [1, 2]


def test_v3_preferred_over_chara_even_when_later() -> None:
    data = card_png([("chara", v2_card("OldName")), ("ccv3", v3_card("NewName"))])
    card = read(data)
    assert card.version == 3 and card.name == "NewName"


def test_first_matching_keyword_wins_case_insensitively() -> None:
    data = card_png([("CHARA", v2_card("First")), ("chara", v2_card("Second"))])
    assert read(data).name == "First"
    data = card_png([("CcV3", v3_card("UpperV3")), ("ccv3", v3_card("LowerV3"))])
    assert read(data).name == "UpperV3"


@pytest.mark.parametrize("kind", ["tEXt", "zTXt", "iTXt", "iTXt-z"])
@pytest.mark.parametrize("where", ["before_idat", "before_iend"])
def test_every_text_chunk_kind_and_placement(kind: str, where: str) -> None:
    card = read(card_png([("chara", v2_card("Zoë", description="名前 ✓"))], kind=kind, where=where))  # type: ignore[arg-type]
    assert card.name == "Zoë" and card.data["description"] == "名前 ✓"


def test_pillow_written_card_is_read() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps(v2_card("Pil")).encode()).decode())
    out = io.BytesIO()
    Image.new("RGBA", (5, 5)).save(out, "PNG", pnginfo=info)
    assert read(out.getvalue()).name == "Pil"


def test_raw_json_and_sloppy_base64_are_accepted() -> None:
    raw = json.dumps(v2_card("Raw", description="ü")).encode("utf-8").decode("latin-1")
    assert read(card_png([("chara", raw)])).data["description"] == "ü"
    encoded = base64.b64encode(json.dumps(v2_card("Sloppy")).encode()).decode().rstrip("=")
    spaced = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60))
    assert read(card_png([("chara", spaced)])).name == "Sloppy"


def test_huge_image_is_never_decoded() -> None:
    # 20000 x 20000 pixels: Pillow refuses to even open it; the walker only seeks past IDAT.
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
    png += text_chunk("chara", v2_card("Huge")) + chunk(b"IEND", b"")
    assert read(png).name == "Huge"


def test_big_asset_chunks_are_skipped_without_reading() -> None:
    asset = text_chunk("chara-ext-asset_:big", "A" * (3 * 1024 * 1024))
    png = insert_chunks(plain_png(), [asset, text_chunk("ccv3", v3_card("WithAssets"))], where="before_iend")
    limits = PngLimits(max_text_chunk_bytes=1024 * 1024, max_text_bytes=1024 * 1024)
    assert read_png_card(io.BytesIO(png), limits=limits).name == "WithAssets"


def test_corrupted_chunk_crc_is_skipped_and_reported() -> None:
    good = text_chunk("chara", v2_card("Good"))
    bad = bytearray(text_chunk("ccv3", v3_card("Bad")))
    bad[-5] ^= 0xFF  # flip a data byte: the CRC no longer matches
    png = insert_chunks(plain_png(), [bytes(bad), good], where="before_iend")
    assert read(png).name == "Good"
    with pytest.raises(NoCardDataError, match="bad CRC"):
        read(insert_chunks(plain_png(), [bytes(bad)], where="before_iend"))


def test_damage_after_the_card_still_yields_it() -> None:
    png = card_png([("chara", v2_card("Survivor"))])
    truncated = png[:-6]
    assert read(truncated).name == "Survivor"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"GIF89a....", NotPngError),
        (b"", NotPngError),
        (b"\x89PNG\r\n\x1a\n", PngStructureError),
        (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 0x7FFFFFF0) + b"IHDR", PngStructureError),
        (b"\x89PNG\r\n\x1a\n" + chunk(b"IDAT", b"x") + chunk(b"IEND", b""), PngStructureError),
        (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", b"x" * 13) + chunk(b"I D@", b"") + chunk(b"IEND", b""), PngStructureError),
    ],
)
def test_broken_structures_raise_card_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        read(data)


def test_png_without_card_data() -> None:
    with pytest.raises(NoCardDataError):
        read(plain_png())


def test_compression_bomb_is_refused() -> None:
    bomb = chunk(b"zTXt", b"chara\x00\x00" + zlib.compress(b"A" * (40 * 1024 * 1024), 9))
    png = insert_chunks(plain_png(), [bomb], where="before_iend")
    with pytest.raises(CardTooLargeError):
        read_png_card(io.BytesIO(png), limits=PngLimits(max_text_chunk_bytes=2 * 1024 * 1024))


def test_total_text_limit() -> None:
    chunks = [text_chunk("chara", "Q" * 600_000) for _ in range(3)]
    png = insert_chunks(plain_png(), chunks, where="before_iend")
    limits = PngLimits(max_text_chunk_bytes=1_000_000, max_text_bytes=1_000_000)
    with pytest.raises(CardTooLargeError):
        list(walk_text_chunks(io.BytesIO(png), limits=limits))


def test_walker_reports_all_text_chunks_in_order() -> None:
    png = card_png([("a", "1"), ("B", "2")], kind="tEXt") 
    chunks = list(walk_text_chunks(io.BytesIO(png)))
    assert [(c.keyword, c.text) for c in chunks] == [("a", "1"), ("B", "2")]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "JSON object"),
        ({"spec": "lorebook_v3", "data": {}}, "unsupported card spec"),
        ({"spec": "chara_card_v2", "data": "nope"}, "data must be an object"),
        ({"foo": 1}, "no name"),
        (v2_card("X", description=["list"]), "data.description must be a string"),
        (v2_card("X", tags={"a": 1}), "data.tags must be a list"),
        (v2_card("X", extensions=[]), "data.extensions must be an object"),
        (v2_card("X", character_book=3), "character_book must be an object"),
    ],
)
def test_invalid_cards_name_the_problem(payload: object, message: str) -> None:
    with pytest.raises(InvalidCardError, match=message):
        read_card_bytes(json.dumps(payload).encode())


def test_json_cards_every_version(tmp_path) -> None:
    for name, payload in {
        "v1": v1_card("One", personality="shy", talkativeness="0.8", fav=True),
        "v2": v2_card("Two", character_version=1.5),
        "v3": v3_card("Three", nickname="Trey"),
        "pyg": {"char_name": "Py", "char_persona": "persona", "char_greeting": "yo"},
    }.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(b"\xef\xbb\xbf" + json.dumps(payload).encode())
        card, kind = read_card_path(path)
        assert kind == "json"
        if name == "v1":
            assert card.data["personality"] == "shy"
            assert card.data["extensions"] == {"talkativeness": "0.8", "fav": True}
        if name == "v2":
            assert card.data["character_version"] == "1.5"
        if name == "v3":
            assert card.version == 3 and card.data["nickname"] == "Trey"
        if name == "pyg":
            assert (card.name, card.data["description"], card.data["first_mes"]) == ("Py", "persona", "yo")


def test_v2_with_top_level_mirror_fills_missing_data_fields() -> None:
    payload = v2_card("Mirror")
    del payload["data"]["description"]
    payload["description"] = "from top level"
    card, _ = read_card_bytes(json.dumps(payload).encode())
    assert card.data["description"] == "from top level"


def test_write_card_png_replaces_old_card_chunks_of_any_kind() -> None:
    png = card_png([("chara", v2_card("Old")), ("CCV3", v3_card("OlderV3"))], kind="iTXt")
    card, _ = read_card_bytes(json.dumps(v2_card("Fresh")).encode())
    out = write_card_png(png, card)
    texts = [(c.keyword, c.chunk_type) for c in walk_text_chunks(io.BytesIO(out))]
    assert texts == [("chara", "tEXt"), ("ccv3", "tEXt")]
    assert read(out).name == "Fresh"
    v2 = json.loads(base64.b64decode(list(walk_text_chunks(io.BytesIO(out)))[0].text))
    assert v2["spec"] == "chara_card_v2" and v2["spec_version"] == "2.0" and v2["name"] == "Fresh"
    with Image.open(io.BytesIO(out)) as im:  # still a valid image for Pillow
        im.load()
        assert im.size == (8, 12)
