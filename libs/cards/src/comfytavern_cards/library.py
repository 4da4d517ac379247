"""Where a user's card library lives, shared by the characters plugin and the tavern node pack.

The location is configured once, under ``plugins.settings.characters``, and both sides resolve
it through :func:`card_library_dir`, so a card dropped into the library is the card a workflow
loads. User ids only ever come from the authenticated principal and are still checked.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import msgspec

from comfytavern.config import Config, ConfigError
from comfytavern.safety import UnsafeName, check_name

__all__ = [
    "SETTINGS_KEY",
    "CardLibrarySettings",
    "card_library_dir",
    "card_library_settings",
    "user_data_dir",
]

#: The ``plugins.settings`` key the library settings are read from.
SETTINGS_KEY = "characters"


class CardLibrarySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``plugins.settings.characters``.

    Cards live in ``<root>/<userId>/<folder>/``. ``root`` defaults to ``data.user_data``; a
    relative ``root`` is resolved against ``data.root``.
    """

    root: str | None = None
    folder: str = "characters"
    #: Largest accepted import upload (PNG or JSON), in bytes.
    max_upload_bytes: int = 32 * 1024 * 1024
    #: Images with more pixels are refused before any decoding (decompression bombs).
    max_image_pixels: int = 40_000_000
    #: Cards larger than this (sum of card text chunks, or the JSON file) are refused.
    max_card_bytes: int = 16 * 1024 * 1024
    #: Parsed summaries kept in memory, keyed by (path, mtime, size).
    cache_entries: int = 4096

    def __post_init__(self) -> None:
        folder = PurePosixPath(self.folder.replace("\\", "/"))
        if folder.is_absolute() or not folder.parts:
            raise ValueError("folder must be a relative path such as 'characters'")
        for part in folder.parts:
            try:
                check_name(part, what="folder segment")
            except UnsafeName as exc:
                raise ValueError(str(exc)) from None
        for key in ("max_upload_bytes", "max_image_pixels", "max_card_bytes"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive")
        if self.cache_entries < 0:
            raise ValueError("cache_entries must not be negative")


def card_library_settings(config: Config) -> CardLibrarySettings:
    raw = config.plugins.settings.get(SETTINGS_KEY, {})
    try:
        return msgspec.convert(raw, CardLibrarySettings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration at $.plugins.settings.{SETTINGS_KEY}: {exc}") from None


def user_data_dir(config: Config, user_id: str) -> Path:
    """``<data.user_data>/<userId>``: the root of everything a user owns on disk."""
    return config.data_path("user_data") / check_name(user_id, what="user id")


def card_library_dir(config: Config, user_id: str, settings: CardLibrarySettings | None = None) -> Path:
    """The folder holding ``user_id``'s character cards (not created here)."""
    settings = settings or card_library_settings(config)
    if settings.root is None:
        base = config.data_path("user_data")
    else:
        root = Path(settings.root)
        base = (root if root.is_absolute() else config.data_path("root") / root).resolve()
    folder = PurePosixPath(settings.folder.replace("\\", "/"))
    return base / check_name(user_id, what="user id") / Path(*folder.parts)
