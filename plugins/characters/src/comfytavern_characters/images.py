"""Image handling with Pillow: sniffing, validation and re-encoding of card images.

Uploaded images are decoded and re-encoded, so nothing but pixels survives (no stale card
chunks, EXIF, ICC or foreign text); pixel counts are checked from the header before any decode,
so a 20000x20000 bomb costs nothing.

Pillow is imported by the first function that decodes or encodes, not with this module: the
plugin loads at every start-up, and most starts never touch an image (Pillow is ~5 ms of it).
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "IMAGE_TYPES",
    "ImageError",
    "default_avatar_png",
    "reencode_png",
    "sniff_image",
]

ImageFormat = Literal["png", "jpeg", "webp", "gif"]

#: Content type per sniffed format; the image route serves nothing else.
IMAGE_TYPES: dict[ImageFormat, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}

#: SillyTavern's avatar size, used for cards that have no image of their own.
AVATAR_SIZE = (512, 768)


class ImageError(ValueError):
    """The image cannot be used (corrupt, unsupported, too many pixels)."""


def sniff_image(head: bytes) -> ImageFormat | None:
    """The real format from the first bytes (never from the file name)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageError(f"the image is {width}x{height} pixels (limit {max_pixels} pixels)")
            if probe.format not in ("PNG", "JPEG", "WEBP", "GIF"):
                raise ImageError(f"unsupported image format {probe.format}")
            probe.verify()
            image = Image.open(io.BytesIO(data))
            image.load()
            return image
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"the image is corrupt or unreadable: {exc}") from None


def reencode_png(data: bytes, *, max_pixels: int) -> bytes:
    """Decode ``data`` (PNG/JPEG/WebP/GIF, first frame) and return a clean PNG of its pixels."""
    from PIL import ImageOps

    image = _open_checked(data, max_pixels)
    image = ImageOps.exif_transpose(image) or image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    image = image.convert("RGBA" if has_alpha else "RGB")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def default_avatar_png() -> bytes:
    """A plain avatar for cards without an image, so every export is a valid PNG card."""
    from PIL import Image

    image = Image.new("RGB", AVATAR_SIZE, (96, 104, 120))
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()
