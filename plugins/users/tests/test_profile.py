"""Profile: username changes, avatar uploads (good and bad input), the stable avatar URL."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin
from starlette.testclient import TestClient

from comfytavern_testing import client_for, make_kernel

STORAGE = {"projects": None, "accounts": "sqlite", "runs": None}


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with client_for(make_kernel(tmp_path, storage=STORAGE)) as c:
        yield c


def image_bytes(fmt: str, size: tuple[int, int] = (32, 16), mode: str = "RGB", **save: Any) -> bytes:
    out = io.BytesIO()
    colour: Any = {"RGBA": (10, 200, 30, 128), "RGB": (10, 200, 30)}.get(mode, 7)
    Image.new(mode, size, colour).save(out, format=fmt, **save)
    return out.getvalue()


def upload(client: TestClient, data: bytes, name: str = "avatar.png", ctype: str = "image/png") -> Any:
    return client.post("/api/users/me/avatar", files={"avatar": (name, data, ctype)})


def test_username_change_is_what_the_editor_expects(client: TestClient) -> None:
    assert client.get("/api/auth/current").json()["currentUser"]["username"] == "本地用户"
    response = client.put("/api/users/me/username", json={"username": "  Anchor User  "})
    assert response.json() == {"success": True, "message": "用户名更新成功", "username": "Anchor User"}
    assert client.get("/api/auth/current").json()["currentUser"]["username"] == "Anchor User"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": ""}, 422),
        ({"username": "   "}, 422),
        ({"username": "x" * 51}, 422),
        ({"username": "bad\nname"}, 422),
        ({"username": 5}, 422),
        ({}, 422),
    ],
)
def test_bad_usernames(client: TestClient, body: dict[str, Any], status: int) -> None:
    assert client.put("/api/users/me/username", json=body).status_code == status


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.put("/api/users/me/username", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_default_avatar_then_upload_at_a_stable_url(client: TestClient) -> None:
    url = client.get("/api/auth/current").json()["currentUser"]["avatarUrl"]
    assert url == "/avatars/default_user.png"
    default = client.get(url)
    assert default.status_code == 200
    assert default.headers["content-type"] == "image/png"
    assert default.headers["x-content-type-options"] == "nosniff"
    assert client.get(url, headers={"If-None-Match": default.headers["etag"]}).status_code == 304
    assert Image.open(io.BytesIO(default.content)).format == "PNG"

    uploaded = upload(client, image_bytes("JPEG", (600, 300)), "photo.jpg", "image/jpeg")
    assert uploaded.status_code == 200
    body = uploaded.json()
    assert body["success"] is True and body["message"] == "头像上传成功"
    assert body["avatarUrl"].startswith("/avatars/default_user.png?v=")
    assert client.get("/api/auth/current").json()["currentUser"]["avatarUrl"] == body["avatarUrl"]
    served = client.get("/avatars/default_user.png")
    assert served.headers["etag"] != default.headers["etag"]
    image = Image.open(io.BytesIO(served.content))
    assert (image.format, image.size) == ("PNG", (256, 128))  # scaled to fit 256x256, aspect kept


def test_metadata_is_stripped_and_orientation_applied(client: TestClient) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x8825] = {2: (1.0, 2.0, 3.0)}  # GPS latitude
    exif[0x010F] = "SecretCam"
    source = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 10, 10)).save(source, format="JPEG", exif=exif, icc_profile=b"\x00" * 128)
    assert upload(client, source.getvalue(), "p.jpg", "image/jpeg").status_code == 200
    png = client.get("/avatars/default_user.png").content
    image = Image.open(io.BytesIO(png))
    assert image.size == (20, 40)
    assert not image.getexif()
    assert "icc_profile" not in image.info and "exif" not in image.info
    assert b"SecretCam" not in png and b"eXIf" not in png and b"iCCP" not in png

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "my home address")
    assert upload(client, image_bytes("PNG", pnginfo=text)).status_code == 200
    assert b"my home address" not in client.get("/avatars/default_user.png").content


@pytest.mark.parametrize(
    ("fmt", "mode", "expected_mode"),
    [("PNG", "RGBA", "RGBA"), ("GIF", "P", "RGB"), ("WEBP", "RGB", "RGB"), ("PNG", "L", "RGB")],
)
def test_supported_formats(client: TestClient, fmt: str, mode: str, expected_mode: str) -> None:
    assert upload(client, image_bytes(fmt, mode=mode)).status_code == 200
    assert Image.open(io.BytesIO(client.get("/avatars/default_user.png").content)).mode == expected_mode


def test_animated_gif_keeps_its_first_frame(client: TestClient) -> None:
    frames = [Image.new("RGB", (10, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert upload(client, out.getvalue(), "a.gif", "image/gif").status_code == 200
    pixel = Image.open(io.BytesIO(client.get("/avatars/default_user.png").content)).getpixel((5, 5))
    assert pixel[0] > 200 and pixel[2] < 50


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge canvas but carries almost no data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


BAD_UPLOADS = [
    ("text file", b"hello, I am not an image", "a.txt", "text/plain", 422, "not a supported image"),
    ("text file claiming to be PNG", b"hello", "a.png", "image/png", 422, "not a supported image"),
    ("empty file", b"", "a.png", "image/png", 422, "empty"),
    ("SVG", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "a.svg", "image/svg+xml", 422, "not a supported image"),
    ("HTML", b"<html><script>alert(1)</script></html>", "a.png", "image/png", 422, "not a supported image"),
    ("BMP (unsupported format)", image_bytes("BMP"), "a.bmp", "image/bmp", 422, "not a supported image"),
    ("truncated PNG", image_bytes("PNG", (64, 64))[:-40], "a.png", "image/png", 422, "corrupt or truncated"),
    ("decompression bomb", _png_header_only(20000, 20000), "a.png", "image/png", 422, "too many pixels"),
    ("larger than 5 MB", b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024 + 10), "a.png", "image/png", 413, "too large"),
]


@pytest.mark.parametrize(("what", "data", "name", "ctype", "status", "fragment"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_avatar_uploads(client: TestClient, what: str, data: bytes, name: str, ctype: str, status: int, fragment: str) -> None:
    before = client.get("/avatars/default_user.png").content
    response = upload(client, data, name, ctype)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert client.get("/avatars/default_user.png").content == before


def test_bad_avatar_requests(client: TestClient) -> None:
    as_json = client.post("/api/users/me/avatar", json={"avatar": "x"})
    assert as_json.status_code == 415
    missing = client.post("/api/users/me/avatar", files={"picture": ("a.png", image_bytes("PNG"), "image/png")})
    assert missing.status_code == 422
    assert "'avatar'" in missing.json()["error"]
    as_text = client.post("/api/users/me/avatar", data={"avatar": "not a file"}, files={"other": ("x", b"x", "text/plain")})
    assert as_text.status_code == 422
    assert "file upload" in as_text.json()["error"]
    two_files = client.post(
        "/api/users/me/avatar",
        files=[("avatar", ("a.png", image_bytes("PNG"), "image/png")), ("avatar", ("b.png", image_bytes("PNG"), "image/png"))],
    )
    assert two_files.status_code == 400
    broken = client.post(
        "/api/users/me/avatar", content=b"garbage", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert broken.status_code in (400, 422)


@pytest.mark.parametrize("name", ["other_user.png", "default_user.jpg", "..%2Fsecret.png", "default_user", ".png"])
def test_avatar_urls_that_are_not_yours_are_404(client: TestClient, name: str) -> None:
    assert client.get(f"/avatars/{name}").status_code == 404
