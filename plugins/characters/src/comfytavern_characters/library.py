"""A user's card library on disk: listing (cached), lookup, import and export.

Layout: files directly in the user's library folder, grouped by stem. ``Alice.png`` (a card, or
the image of ``Alice.json``), ``Alice.json`` (a card), ``Alice.jpg``/``.jpeg``/``.webp``/``.gif``
(the image of ``Alice.json``). The stem is the card's id. When a stem has both a JSON card and a
PNG card, the JSON wins (it is the editable copy) and the PNG is its image.

Broken-file policy: a file that cannot be read as a card is left out of the listing, logged once
per file version (path, mtime, size) and reported in the response's ``skipped`` list; it never
breaks the listing. All methods are synchronous: call them in a worker thread.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import re
import threading
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from comfytavern.config import Config
from comfytavern.files import private_dir
from comfytavern.safety import UnsafeName, check_name
from comfytavern_cards import (
    CardError,
    CardLibrarySettings,
    CharacterCard,
    PngLimits,
    PngStructureError,
    card_library_dir,
    read_card_bytes,
    read_card_path,
    write_card_png,
)
from comfytavern_characters.images import ImageError, default_avatar_png, reencode_png, sniff_image
from comfytavern_characters.wire import ApiCharacterEntry, SkippedFile

__all__ = ["CardFiles", "CharacterLibrary", "ImportError_", "ScanResult", "entry_for"]

log = logging.getLogger("comfytavern.characters")

CARD_EXTS = {".png", ".json"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
_COMPANION_ORDER = (".png", ".webp", ".jpg", ".jpeg", ".gif")
_UNSAFE_STEM_CHARS = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')
_MAX_STEM_BYTES = 100


class ImportError_(ValueError):
    """An import was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class CardFiles:
    """The files of one stem: at most one JSON card, one PNG, and other images."""

    stem: str
    json: Path | None = None
    png: Path | None = None
    images: dict[str, Path] = field(default_factory=dict)

    def image(self) -> Path | None:
        for ext in _COMPANION_ORDER:
            if ext == ".png" and self.png is not None:
                return self.png
            if ext in self.images:
                return self.images[ext]
        return None


@dataclass(frozen=True)
class ScanResult:
    entries: list[ApiCharacterEntry]
    skipped: list[SkippedFile]


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _create_date(card: CharacterCard) -> str | None:
    raw_date = _text(card.raw.get("create_date"))
    if raw_date:
        return raw_date
    stamp = card.data.get("creation_date")
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and 0 < stamp < 253402300800:
        moment = _dt.datetime.fromtimestamp(stamp, tz=_dt.UTC)
        return moment.isoformat().replace("+00:00", "Z")
    return None


def entry_for(card: CharacterCard, stem: str, image_name: str | None) -> ApiCharacterEntry:
    """Map a card to the editor's ``ApiCharacterEntry`` (fields as in the original backend)."""
    raw, data = card.raw, card.data
    extensions: Mapping[str, Any] = data.get("extensions") or {}
    favorite = raw.get("fav") if raw.get("fav") is not None else extensions.get("fav")
    return ApiCharacterEntry(
        id=stem,
        name=card.name or stem,
        image_name=image_name,
        tags=list(data.get("tags") or []),
        favorite=_truthy(favorite),
        description=_text(data.get("description")),
        creator=_text(data.get("creator")),
        creator_comment=_text(raw.get("creatorcomment")) or _text(data.get("creator_notes")),
        create_date=_create_date(card),
        character_version=_text(data.get("character_version")),
        talkativeness=_text(raw.get("talkativeness")) or _text(extensions.get("talkativeness")),
        avatar=_text(raw.get("avatar")),
        chat=_text(raw.get("chat")),
    )


def derive_stem(name: str) -> str:
    """A safe file stem from a card name (the name itself stays untouched inside the card)."""
    value = unicodedata.normalize("NFC", name)
    value = _UNSAFE_STEM_CHARS.sub("_", value)
    value = "".join(c for c in value if unicodedata.category(c) not in ("Cf", "Zl", "Zp"))
    value = re.sub(r"\s+", " ", value).strip(" ._")
    encoded = value.encode("utf-8")[:_MAX_STEM_BYTES]
    value = encoded.decode("utf-8", errors="ignore").strip(" ._")
    try:
        return check_name(value, what="card name")
    except UnsafeName:
        return "character"


class CharacterLibrary:
    """Per-kernel service: every user's library under the configured root."""

    def __init__(self, config: Config, settings: CardLibrarySettings) -> None:
        self.config = config
        self.settings = settings
        self.limits = PngLimits(
            max_text_chunk_bytes=settings.max_card_bytes,
            max_text_bytes=settings.max_card_bytes,
        )
        self._cache: OrderedDict[str, tuple[int, int, CharacterCard | str]] = OrderedDict()
        self._lock = threading.Lock()

    # -- locations -------------------------------------------------------------------------
    def directory(self, user_id: str) -> Path:
        return card_library_dir(self.config, user_id, self.settings)

    # -- parsing with a cache ----------------------------------------------------------------
    def _read(self, path: Path, stat: os.stat_result) -> CharacterCard | str:
        key = str(path)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == stat.st_mtime_ns and hit[1] == stat.st_size:
                self._cache.move_to_end(key)
                return hit[2]
        try:
            result: CharacterCard | str = read_card_path(path, limits=self.limits)[0]
        except CardError as exc:
            result = str(exc)
            log.warning("character library: skipping %s: %s", path, result)
        except OSError as exc:
            result = f"cannot read the file: {exc.strerror or exc}"
            log.warning("character library: skipping %s: %s", path, result)
        if self.settings.cache_entries:
            with self._lock:
                self._cache[key] = (stat.st_mtime_ns, stat.st_size, result)
                self._cache.move_to_end(key)
                while len(self._cache) > self.settings.cache_entries:
                    self._cache.popitem(last=False)
        return result

    def _groups(self, directory: Path) -> dict[str, CardFiles]:
        groups: dict[str, CardFiles] = {}
        try:
            listing = list(os.scandir(directory))
        except FileNotFoundError:
            return groups
        for item in listing:
            name = item.name
            if name.startswith("."):
                continue
            stem, ext = os.path.splitext(name)
            ext = ext.lower()
            if ext not in CARD_EXTS | IMAGE_EXTS or not stem:
                continue
            try:
                check_name(name, what="file name")
                if not item.is_file(follow_symlinks=False):
                    continue
            except (UnsafeName, OSError):
                log.debug("character library: ignoring %r", name)
                continue
            files = groups.setdefault(stem, CardFiles(stem))
            path = Path(item.path)
            if ext == ".json":
                files.json = path
            elif ext == ".png":
                files.png = path
            else:
                files.images[ext] = path
        return groups

    def _card_of(self, files: CardFiles, skipped: list[SkippedFile] | None) -> CharacterCard | None:
        """The stem's card: the JSON's if it reads, else the PNG's; reasons go to ``skipped``."""
        reasons: list[SkippedFile] = []
        for path in (files.json, files.png):
            if path is None:
                continue
            try:
                result = self._read(path, path.stat())
            except OSError as exc:
                result = f"cannot read the file: {exc.strerror or exc}"
            if isinstance(result, CharacterCard):
                if skipped is not None and path is files.png:
                    skipped.extend(reasons)
                return result
            reasons.append(SkippedFile(path.name, result))
        if skipped is not None:
            skipped.extend(reasons)
        return None

    def scan(self, user_id: str) -> tuple[list[ApiCharacterEntry], list[SkippedFile]]:
        """Every readable card of the user, sorted by name; unreadable files in ``skipped``."""
        groups = self._groups(self.directory(user_id))
        entries: list[ApiCharacterEntry] = []
        skipped: list[SkippedFile] = []
        for stem, files in groups.items():
            if files.json is None and files.png is None:
                continue  # a lone JPEG/WebP is an image, not a card
            card = self._card_of(files, skipped)
            if card is None:
                continue
            image = files.image()
            entries.append(entry_for(card, stem, image.name if image else None))
        entries.sort(key=lambda e: (e.name.casefold(), e.id))
        skipped.sort(key=lambda s: s.file)
        return entries, skipped

    def find(self, user_id: str, card_id: str) -> tuple[CardFiles, CharacterCard] | None:
        """The files and card of one id, or ``None``. ``card_id`` must already be a safe name."""
        files = self._groups(self.directory(user_id)).get(card_id)
        if files is None or (files.json is None and files.png is None):
            return None
        card = self._card_of(files, None)
        return (files, card) if card is not None else None

    # -- import ------------------------------------------------------------------------------
    def import_card(self, user_id: str, data: bytes, stem: str | None) -> ApiCharacterEntry:
        """Validate, clean and store an uploaded card; never overwrites an existing file."""
        if len(data) > self.settings.max_upload_bytes:
            raise ImportError_(413, f"the card is larger than {self.settings.max_upload_bytes} bytes")
        try:
            card, kind = read_card_bytes(data, limits=self.limits, strict=True)
        except CardError as exc:
            raise ImportError_(422, str(exc)) from None
        if kind == "png":
            try:
                clean = reencode_png(data, max_pixels=self.settings.max_image_pixels)
            except ImageError as exc:
                raise ImportError_(422, str(exc)) from None
            payload, ext = write_card_png(clean, card), ".png"
        else:
            payload = msgspec.json.format(msgspec.json.encode(dict(card.raw)), indent=2)
            ext = ".json"
        directory = self.directory(user_id)
        private_dir(directory)
        explicit = stem is not None
        base = stem if stem is not None else derive_stem(card.name or "character")
        final = self._store_new(directory, base, ext, payload, explicit)
        return entry_for(card, final.stem, final.name if ext == ".png" else None)

    def _store_new(self, directory: Path, base: str, ext: str, payload: bytes, explicit: bool) -> Path:
        tmp = directory / f".import-{uuid.uuid4().hex}.tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
            fh.write(payload)
        try:
            taken = {stem.casefold() for stem in self._groups(directory)}
            for attempt in range(1000):
                stem = base if attempt == 0 else f"{base}_{attempt}"
                if stem.casefold() in taken:
                    if explicit:
                        raise ImportError_(409, f"a card named {base!r} already exists")
                    continue
                target = directory / f"{stem}{ext}"
                try:
                    _link_exclusive(tmp, target)
                except FileExistsError:
                    if explicit:
                        raise ImportError_(409, f"a card named {base!r} already exists") from None
                    continue
                return target
            raise ImportError_(409, f"too many cards named {base!r}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    # -- export ------------------------------------------------------------------------------
    def export_png(self, files: CardFiles, card: CharacterCard) -> bytes:
        """The card inside its image as a PNG (``chara`` V2 + ``ccv3`` V3), as ST exports."""
        image = files.image()
        max_read = 4 * self.settings.max_upload_bytes
        if image is None:
            return write_card_png(default_avatar_png(), card)
        if image.stat().st_size > max_read:
            raise ImportError_(413, f"the card image is larger than {max_read} bytes")
        data = image.read_bytes()
        if sniff_image(data[:16]) == "png":
            try:
                return write_card_png(data, card)
            except PngStructureError:
                pass
        try:
            clean = reencode_png(data, max_pixels=self.settings.max_image_pixels)
        except ImageError as exc:
            raise ImportError_(422, f"the card image cannot be exported: {exc}") from None
        return write_card_png(clean, card)


def _link_exclusive(source: Path, target: Path) -> None:
    """Publish ``source`` as ``target`` atomically, failing if ``target`` exists."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        # File systems without hard links: exclusive create, then copy the bytes in.
        with open(target, "xb") as out:
            out.write(source.read_bytes())
