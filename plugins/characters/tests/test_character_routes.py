"""The /api/characters routes: listing, images, import, export, per-user isolation and bad inputs."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from comfytavern_cards import read_png_card, walk_text_chunks
from comfytavern_cards.testing import card_png, insert_chunks, plain_png, text_chunk, v1_card, v2_card, v3_card
from comfytavern_testing import client_for


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (6, 6), (1, 2, 3)).save(out, "JPEG")
    return out.getvalue()


def test_empty_library_lists_nothing(client: TestClient) -> None:
    response = client.get("/api/characters")
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": [], "skipped": []}


def test_listing_every_kind_of_card(client: TestClient, library: Path) -> None:
    (library / "Seraphina.png").write_bytes(
        card_png([("chara", v2_card("Seraphina", description="guardian", tags=["fantasy"], creator="someone",
                                    creator_notes="v2 card", character_version="1.0",
                                    extensions={"talkativeness": "0.5", "fav": True}))])
    )
    (library / "Vee.png").write_bytes(card_png([("chara", v2_card("Old")), ("ccv3", v3_card("Vee", creation_date=1714564800))], kind="zTXt"))
    (library / "Jay.json").write_text(
        json.dumps({**v1_card("Jay", description="json only"), "create_date": "2024-5-1 @12h 00m 00s", "chat": "Jay - 1", "avatar": "none"})
    )
    (library / "Pic.json").write_text(json.dumps(v2_card("Pic")))
    (library / "Pic.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    (library / "Both.png").write_bytes(card_png([("chara", v2_card("FromPng"))]))
    (library / "Both.json").write_text(json.dumps(v2_card("FromJson")))
    (library / "lonely.jpg").write_bytes(jpeg())
    (library / ".hidden.json").write_text(json.dumps(v2_card("Hidden")))
    (library / "notes.txt").write_text("not a card")

    body = client.get("/api/characters").json()
    assert body["success"] is True and body["skipped"] == []
    by_id = {e["id"]: e for e in body["data"]}
    assert sorted(by_id) == ["Both", "Jay", "Pic", "Seraphina", "Vee"]
    assert by_id["Seraphina"] == {
        "id": "Seraphina", "name": "Seraphina", "imageName": "Seraphina.png", "tags": ["fantasy"],
        "favorite": True, "description": "guardian", "creator": "someone", "creatorComment": "v2 card",
        "characterVersion": "1.0", "talkativeness": "0.5",
    }
    assert by_id["Vee"]["name"] == "Vee" and by_id["Vee"]["createDate"] == "2024-05-01T12:00:00Z"
    assert by_id["Jay"] == {
        "id": "Jay", "name": "Jay", "imageName": None, "tags": [], "favorite": False,
        "description": "json only", "createDate": "2024-5-1 @12h 00m 00s", "avatar": "none", "chat": "Jay - 1",
    }
    assert by_id["Pic"]["imageName"] == "Pic.webp"
    assert by_id["Both"]["name"] == "FromJson" and by_id["Both"]["imageName"] == "Both.png"
    assert [e["name"] for e in body["data"]] == ["FromJson", "Jay", "Pic", "Seraphina", "Vee"]


def test_broken_files_are_skipped_with_reasons(client: TestClient, library: Path, caplog: pytest.LogCaptureFixture) -> None:
    (library / "Good.png").write_bytes(card_png([("chara", v2_card("Good"))]))
    (library / "Plain.png").write_bytes(plain_png())
    (library / "Truncated.png").write_bytes(card_png([("chara", v2_card("T"))])[:40])
    (library / "Garbage.json").write_text("{not json")
    (library / "NotACard.json").write_text(json.dumps({"hello": 1}))
    bad = bytearray(text_chunk("chara", v2_card("Crc")))
    bad[-6] ^= 1
    (library / "Crc.png").write_bytes(insert_chunks(plain_png(), [bytes(bad)], where="before_iend"))
    (library / "Fallback.json").write_text("[1]")
    (library / "Fallback.png").write_bytes(card_png([("chara", v2_card("Fallback"))]))

    with caplog.at_level("WARNING", logger="comfytavern.characters"):
        body = client.get("/api/characters").json()
    assert [e["id"] for e in body["data"]] == ["Fallback", "Good"]
    reasons = {s["file"]: s["reason"] for s in body["skipped"]}
    assert set(reasons) == {"Crc.png", "Fallback.json", "Garbage.json", "NotACard.json", "Plain.png", "Truncated.png"}
    assert "bad CRC" in reasons["Crc.png"]
    assert "no character card data" in reasons["Plain.png"]
    assert "not valid JSON" in reasons["Garbage.json"]
    assert "no name" in reasons["NotACard.json"]
    assert len([r for r in caplog.records if "skipping" in r.getMessage()]) == 6
    caplog.clear()
    with caplog.at_level("WARNING", logger="comfytavern.characters"):
        again = client.get("/api/characters").json()
    assert again == body
    assert not caplog.records  # cached by (mtime, size): logged once per file version


def test_cache_notices_changed_files(client: TestClient, library: Path) -> None:
    path = library / "Change.json"
    path.write_text(json.dumps(v2_card("Before")))
    assert client.get("/api/characters").json()["data"][0]["name"] == "Before"
    path.write_text(json.dumps(v2_card("After, longer")))
    assert client.get("/api/characters").json()["data"][0]["name"] == "After, longer"


def test_image_route(client: TestClient, library: Path) -> None:
    png = card_png([("chara", v2_card("Img"))])
    (library / "Img.png").write_bytes(png)
    (library / "Photo.JPG").write_bytes(jpeg())
    (library / "Fake.png").write_text("<html><script>alert(1)</script></html>")
    (library / "Notes.txt").write_text("x")
    (library / "Image 图.png").write_bytes(png)

    response = client.get("/api/characters/image/Img.png")
    assert response.status_code == 200 and response.content == png
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    response = client.get("/api/characters/image/Photo.JPG")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert client.get("/api/characters/image/" + "Image%20%E5%9B%BE.png").status_code == 200

    for name, status in [
        ("..%2F..%2Fsecret.png", 400),
        ("../secret.png", 404),  # normalised away by the HTTP client: no route
        ("%2E%2E", 400),
        (".hidden.png", 400),
        ("a%5Cb.png", 400),
        ("sub%2Fdir.png", 400),
        ("nul%00.png", 400),
        ("missing.png", 404),
        ("Notes.txt", 415),
        ("Fake.png", 415),
        ("archive.svg", 415),
    ]:
        assert client.get(f"/api/characters/image/{name}").status_code == status, name


def test_users_are_isolated(tmp_path: Path, kernel_factory) -> None:
    kernel_for = kernel_factory
    kernel = kernel_for(tmp_path)
    with client_for(kernel) as c:
        data = card_png([("chara", v2_card("Private"))])
        r = c.post("/api/characters/import", headers={"X-User": "alice"}, files={"file": ("p.png", data, "image/png")})
        assert r.status_code == 201
        assert [e["id"] for e in c.get("/api/characters", headers={"X-User": "alice"}).json()["data"]] == ["Private"]
        assert c.get("/api/characters", headers={"X-User": "bob"}).json()["data"] == []
        assert c.get("/api/characters/image/Private.png", headers={"X-User": "bob"}).status_code == 404
        assert c.get("/api/characters/Private/export", headers={"X-User": "bob"}).status_code == 404
        assert c.get("/api/characters").status_code == 401
    assert (tmp_path / "data" / "users" / "alice" / "characters" / "Private.png").is_file()


def test_scopes_are_enforced(tmp_path: Path, kernel_factory) -> None:
    kernel_for = kernel_factory
    with client_for(kernel_for(tmp_path)) as c:
        reader = {"X-User": "k", "X-Scopes": "characters:read"}
        assert c.get("/api/characters", headers=reader).status_code == 200
        r = c.post("/api/characters/import", headers=reader, content=json.dumps(v2_card("X")),
                   )
        assert r.status_code == 403
        assert c.get("/api/characters", headers={"X-User": "k", "X-Scopes": "projects:read"}).status_code == 403


def test_import_png_is_cleaned_and_stored(client: TestClient, library: Path) -> None:
    original = v2_card("Anna/Bell?", description="desc", extensions={"custom/x": 1}, unknown_key="kept")
    big = Image.new("RGBA", (40, 60), (10, 20, 30, 128))
    out = io.BytesIO()
    big.save(out, "PNG")
    data = insert_chunks(out.getvalue(), [text_chunk("tool-meta", "secret"), text_chunk("chara", original)], where="before_iend")
    r = client.post("/api/characters/import", files={"file": ("card.png", data, "image/png")})
    assert r.status_code == 201, r.text
    entry = r.json()["data"]
    assert entry["id"] == "Anna_Bell" and entry["name"] == "Anna/Bell?" and entry["imageName"] == "Anna_Bell.png"
    stored = (library / "Anna_Bell.png").read_bytes()
    keywords = [c.keyword for c in walk_text_chunks(io.BytesIO(stored))]
    assert keywords == ["chara", "ccv3"]  # foreign text dropped by the re-encode
    card = read_png_card(io.BytesIO(stored))
    assert card.version == 3 and card.data["unknown_key"] == "kept" and card.data["extensions"] == {"custom/x": 1}
    with Image.open(io.BytesIO(stored)) as im:
        assert im.size == (40, 60) and im.mode == "RGBA"
    # A second import of the same name never overwrites.
    r2 = client.post("/api/characters/import", files={"file": ("card.png", data, "image/png")})
    assert r2.status_code == 201 and r2.json()["data"]["id"] == "Anna_Bell_1"
    assert [e["id"] for e in client.get("/api/characters").json()["data"]] == ["Anna_Bell", "Anna_Bell_1"]


def test_import_json_raw_body_and_explicit_name(client: TestClient, library: Path) -> None:
    payload = v3_card("Jade", nickname="J", assets=[{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}])
    r = client.post("/api/characters/import?name=My%20Jade", content=json.dumps(payload), headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["data"] == {"id": "My Jade", "name": "Jade", "imageName": None, "tags": [], "favorite": False}
    stored = json.loads((library / "My Jade.json").read_text())
    assert stored == payload
    dup = client.post("/api/characters/import?name=My%20Jade", content=json.dumps(payload), headers={"Content-Type": "application/json"})
    assert dup.status_code == 409
    # multipart with a name field and ST's field name "avatar"
    r = client.post("/api/characters/import", files={"avatar": ("x.json", json.dumps(v1_card("Old")), "application/json")}, data={"name": "Legacy"})
    assert r.status_code == 201 and r.json()["data"]["id"] == "Legacy"


def test_import_bad_inputs(tmp_path: Path, kernel_factory) -> None:
    kernel_for = kernel_factory
    kernel = kernel_for(tmp_path, plugins={"settings": {"characters": {"max_upload_bytes": 50_000, "max_image_pixels": 10_000}}})
    huge_pixels = card_png([("chara", v2_card("Wide"))], size=(200, 200))
    cases = [
        ({"content": b"GIF89a", "headers": {"Content-Type": "application/octet-stream"}}, 422),
        ({"content": b"", "headers": {"Content-Type": "application/json"}}, 400),
        ({"content": b"{oops", "headers": {"Content-Type": "application/json"}}, 422),
        ({"content": json.dumps({"spec": "chara_card_v2", "data": 1}), "headers": {"Content-Type": "application/json"}}, 422),
        ({"content": plain_png(), "headers": {"Content-Type": "image/png"}}, 422),
        ({"content": huge_pixels, "headers": {"Content-Type": "image/png"}}, 422),
        ({"content": b"{" + b" " * 60_000 + b"}", "headers": {"Content-Type": "application/json"}}, 413),
        ({"content": "x", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"files": {"other": ("a.json", b"{}", "application/json")}}, 400),
        ({"content": b"abc", "headers": {"Content-Type": "multipart/form-data"}}, 400),
        ({"content": b"--xx\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=xx"}}, 400),
        ({"content": json.dumps(v2_card("N")), "headers": {"Content-Type": "application/json"}, "params": {"name": "../evil"}}, 400),
        ({"content": json.dumps(v2_card("N")), "headers": {"Content-Type": "application/json"}, "params": {"name": "CON"}}, 400),
    ]
    with client_for(kernel, headers={"X-User": "alice"}) as c:
        for kwargs, status in cases:
            r = c.post("/api/characters/import", **kwargs)
            assert r.status_code == status, (kwargs.get("params"), kwargs.get("headers"), r.text)
            assert "error" in r.json()
        assert c.get("/api/characters").json()["data"] == []
    library = tmp_path / "data" / "users" / "alice" / "characters"
    assert not library.exists() or [p.name for p in library.iterdir()] == []


WRONG_TYPES = [
    (v2_card("X", character_version=1.5), "data.character_version must be a string, not number"),
    (v2_card("X", description=42), "data.description must be a string, not number"),
    (v2_card("X", creator=True), "data.creator must be a string, not boolean"),
    (v2_card("X", tags="a, b"), "data.tags must be a list of strings, not string"),
    (v2_card("X", tags=["a", 3]), "data.tags must be a list of strings, not list"),
    (v2_card("X", alternate_greetings=[None]), "data.alternate_greetings must be a list of strings"),
    (v2_card("X", extensions=[]), "data.extensions must be an object, not list"),
    (v2_card("X", character_book={"entries": [{"keys": "k", "content": "c"}]}),
     "data.character_book.entries[0].keys must be a list of strings, not string"),
    (v2_card("X", character_book={"entries": [{"keys": ["k"], "content": "c", "enabled": "yes"}]}),
     "data.character_book.entries[0].enabled must be a boolean, not string"),
    (v2_card("X", character_book={"entries": ["not an entry"]}), "data.character_book.entries[0] must be an object"),
    (v2_card("X", character_book={"scan_depth": "4", "entries": []}), "data.character_book.scan_depth must be a number"),
    ({**v2_card("X"), "spec_version": 2.0}, "spec_version must be a string, not number"),
    (v3_card("X", nickname=["n"]), "data.nickname must be a string, not list"),
    (v3_card("X", creation_date="2024-01-01"), "data.creation_date must be a number, not string"),
    (v3_card("X", assets={"type": "icon"}), "data.assets must be a list, not object"),
    (v3_card("X", assets=[{"type": "icon", "uri": 5}]), "data.assets[0].uri must be a string, not number"),
    (v3_card("X", creator_notes_multilingual={"en": 1}), "data.creator_notes_multilingual.en must be a string"),
    (v1_card("Old", personality=7), "card.personality must be a string, not number"),
    ({"char_name": "Py", "char_persona": ["p"]}, "card.char_persona must be a string, not list"),
]


@pytest.mark.parametrize(("payload", "message"), WRONG_TYPES)
def test_import_refuses_fields_of_the_wrong_type(client: TestClient, library: Path, payload: dict, message: str) -> None:
    as_json = client.post("/api/characters/import", content=json.dumps(payload), headers={"Content-Type": "application/json"})
    as_png = client.post("/api/characters/import", files={"file": ("c.png", card_png([("chara", payload)]), "image/png")})
    for r in (as_json, as_png):
        assert r.status_code == 422, r.text
        assert message in r.json()["error"]
    assert list(library.iterdir()) == []


def test_import_accepts_nulls_and_well_typed_optional_fields(client: TestClient, library: Path) -> None:
    book = {"name": "b", "scan_depth": 4, "extensions": {}, "entries": [
        {"keys": ["k"], "content": "c", "enabled": True, "insertion_order": 100, "extensions": {}, "id": 1,
         "position": "before_char", "case_sensitive": None}]}
    payload = v3_card("Typed", character_version=None, tags=None, nickname="T", creation_date=1700000000,
                      source=["https://example.invalid"], character_book=book, creator_notes_multilingual={"en": "hi"})
    r = client.post("/api/characters/import", content=json.dumps(payload), headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text


def test_library_files_stay_readable_with_lenient_types(client: TestClient, library: Path) -> None:
    (library / "Lenient.json").write_text(json.dumps(v2_card("Lenient", character_version=1.5, tags="a, b")))
    entry = client.get("/api/characters").json()["data"][0]
    assert entry["characterVersion"] == "1.5" and entry["tags"] == ["a", "b"]


def test_import_of_a_deeply_nested_card_is_a_422(client: TestClient, library: Path) -> None:
    for depth in (200, 990, 5000):
        deep = "[" * depth + "]" * depth
        body = '{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "D", "extensions": {"x": ' + deep + "}}}"
        r = client.post("/api/characters/import", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "nested too deeply" in r.json()["error"], (depth, r.text)
    assert list(library.iterdir()) == []


def test_export_png_round_trip(client: TestClient, library: Path) -> None:
    (library / "Exp.png").write_bytes(card_png([("chara", v2_card("Exp", tags=["a"], weird={"k": [1]}))], kind="iTXt"))
    r = client.get("/api/characters/Exp/export")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"].startswith('attachment; filename="Exp.png"')
    chunks = list(walk_text_chunks(io.BytesIO(r.content)))
    assert [(c.keyword, c.chunk_type) for c in chunks] == [("chara", "tEXt"), ("ccv3", "tEXt")]
    v2 = json.loads(base64.b64decode(chunks[0].text))
    v3 = json.loads(base64.b64decode(chunks[1].text))
    assert (v2["spec"], v2["spec_version"], v3["spec"], v3["spec_version"]) == ("chara_card_v2", "2.0", "chara_card_v3", "3.0")
    assert v2["name"] == "Exp" and v2["data"]["weird"] == {"k": [1]} and v3["data"]["tags"] == ["a"]


def test_export_json_companion_image_and_no_image(client: TestClient, library: Path) -> None:
    (library / "Jpg.json").write_text(json.dumps(v1_card("Jpg", description="with a jpeg")))
    (library / "Jpg.jpeg").write_bytes(jpeg())
    (library / "Bare.json").write_text(json.dumps(v2_card("Bare")))
    r = client.get("/api/characters/Jpg/export?format=png")
    assert r.status_code == 200
    card = read_png_card(io.BytesIO(r.content))
    assert card.name == "Jpg" and card.data["description"] == "with a jpeg"
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.format == "PNG" and im.size == (6, 6)
    r = client.get("/api/characters/Bare/export")
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.size == (512, 768)
    assert read_png_card(io.BytesIO(r.content)).name == "Bare"
    r = client.get("/api/characters/Jpg/export?format=json")
    assert r.status_code == 200 and r.json()["spec"] == "chara_card_v2" and r.json()["description"] == "with a jpeg"


def test_get_one_and_bad_ids(client: TestClient, library: Path) -> None:
    (library / "One.json").write_text(json.dumps(v2_card("One", foo="bar")))
    r = client.get("/api/characters/One")
    assert r.status_code == 200
    body = r.json()
    assert body["data"]["id"] == "One" and body["card"]["spec"] == "chara_card_v3" and body["card"]["data"]["foo"] == "bar"
    assert client.get("/api/characters/Nobody").status_code == 404
    assert client.get("/api/characters/%2E%2E/export").status_code == 400
    assert client.get("/api/characters/One/export?format=gif").status_code == 400
    assert client.get("/api/characters/Nobody/export").status_code == 404


def test_configurable_location(tmp_path: Path, kernel_factory) -> None:
    kernel_for = kernel_factory
    kernel = kernel_for(tmp_path, plugins={"settings": {"characters": {"root": "cards-root", "folder": "library/SillyTavern/CharacterCard"}}})
    target = tmp_path / "cards-root" / "alice" / "library" / "SillyTavern" / "CharacterCard"
    target.mkdir(parents=True)
    (target / "Here.json").write_text(json.dumps(v2_card("Here")))
    with client_for(kernel, headers={"X-User": "alice"}) as c:
        assert [e["id"] for e in c.get("/api/characters").json()["data"]] == ["Here"]


@pytest.mark.parametrize("settings", [{"folder": "../escape"}, {"folder": "/abs"}, {"max_upload_bytes": 0}, {"unknown": 1}])
def test_bad_settings_are_reported(tmp_path: Path, settings: dict[str, object]) -> None:
    from comfytavern import ConfigError
    from comfytavern_cards import card_library_settings
    from comfytavern_testing import make_config

    config = make_config(tmp_path, plugins={"settings": {"characters": settings}})
    with pytest.raises(ConfigError, match="plugins.settings.characters"):
        card_library_settings(config)
