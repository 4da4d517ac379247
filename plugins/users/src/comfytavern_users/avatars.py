"""Avatars: re-encoding uploads with Pillow, a generated default, and the stable URL.

An upload is decoded (PNG, JPEG, GIF or WebP only; the first frame of an animation), turned
upright from its EXIF orientation, scaled down to fit 256x256 and written as a fresh PNG that
carries no metadata at all (no EXIF, GPS, ICC profile or text chunks). The file lives at
``<data.user_data>/<uid>/avatar.png`` and is served at ``/avatars/<uid>.png``; a user without an
upload gets a generated identicon at the same URL. ``avatarUrl`` adds ``?v=<mtime>`` so a new
upload is never hidden by a cached old one.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from pathlib import Path

import anyio
import anyio.to_thread

from comfytavern.safety import UnsafeName, check_name, resolve_inside
from comfytavern_accounts.secrets import write_private
from comfytavern_users.service import Accounts

__all__ = [
    "AVATAR_SIZE",
    "AvatarRejected",
    "avatar_path",
    "avatar_url",
    "default_avatar",
    "reencode_avatar",
    "write_avatar",
]

AVATAR_SIZE = 256
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
#: Images with more pixels than this are refused before decoding (decompression bombs).
MAX_PIXELS = 40_000_000


class AvatarRejected(ValueError):
    """The upload is not a usable image; the message says why (shown to the user)."""


def reencode_avatar(data: bytes, *, max_pixels: int = MAX_PIXELS, size: int = AVATAR_SIZE) -> bytes:
    """Decode ``data`` and return a clean PNG, or raise :class:`AvatarRejected`. Blocking: call
    it in a worker thread."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise AvatarRejected("the uploaded file is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except UnidentifiedImageError:
        raise AvatarRejected("the file is not a supported image (PNG, JPEG, GIF or WebP)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise AvatarRejected(f"the image has too many pixels (at most {max_pixels:,})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise AvatarRejected(f"the image header is damaged ({exc})") from None
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise AvatarRejected("the image has no pixels")
        if width * height > max_pixels:
            raise AvatarRejected(f"the image has too many pixels ({width}x{height}; at most {max_pixels:,})")
        try:
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise AvatarRejected(f"the image data is corrupt or truncated ({exc})") from None
        has_alpha = upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info)
        converted = upright.convert("RGBA" if has_alpha else "RGB")
        converted.thumbnail((size, size), Image.Resampling.LANCZOS)
        # A new image from raw pixels only: nothing of the original's metadata can survive.
        clean = Image.frombytes(converted.mode, converted.size, converted.tobytes())
        out = io.BytesIO()
        clean.save(out, format="PNG", optimize=True)
        return out.getvalue()


_DEFAULTS: OrderedDict[str, bytes] = OrderedDict()


def default_avatar(uid: str) -> bytes:
    """A deterministic 5x5 mirrored identicon for ``uid`` (PNG, cached)."""
    cached = _DEFAULTS.get(uid)
    if cached is not None:
        _DEFAULTS.move_to_end(uid)
        return cached
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(b"ct-avatar|" + uid.encode("utf-8")).digest()
    colour = (64 + digest[0] % 160, 64 + digest[1] % 160, 64 + digest[2] % 160)
    cell, grid, margin = 28, 5, 18
    side = cell * grid + 2 * margin
    image = Image.new("RGB", (side, side), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    for row in range(grid):
        for col in range(3):
            if digest[3 + row * 3 + col] % 2:
                for c in {col, grid - 1 - col}:
                    x, y = margin + c * cell, margin + row * cell
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    data = out.getvalue()
    _DEFAULTS[uid] = data
    while len(_DEFAULTS) > 256:
        _DEFAULTS.popitem(last=False)
    return data


def avatar_path(accounts: Accounts, uid: str) -> Path:
    """``<data.user_data>/<uid>/avatar.png``; raises UnsafeName for an unusable id."""
    check_name(uid, what="user id")
    return resolve_inside(accounts.user_data_root, uid, "avatar.png")


async def avatar_url(accounts: Accounts, uid: str) -> str:
    base = f"/avatars/{uid}.png"
    try:
        path = avatar_path(accounts, uid)
    except UnsafeName:
        return base
    try:
        stat = await anyio.Path(path).stat()
    except OSError:
        return base
    return f"{base}?v={stat.st_mtime_ns // 1_000_000}"


async def write_avatar(accounts: Accounts, uid: str, png: bytes) -> None:
    """Replace the avatar atomically (a reader never sees half a file)."""
    path = avatar_path(accounts, uid)
    await anyio.to_thread.run_sync(lambda: write_private(path, png))
