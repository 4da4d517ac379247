"""The errors card parsing raises. Every failure is a :class:`CardError` with a message a user can act on."""

from __future__ import annotations

__all__ = [
    "CardError",
    "CardTooLargeError",
    "InvalidCardError",
    "NoCardDataError",
    "NotPngError",
    "PngStructureError",
]


class CardError(ValueError):
    """Base class: the file is not a usable character card (the message says why)."""


class NotPngError(CardError):
    """The bytes do not start with the PNG signature."""


class PngStructureError(CardError):
    """The chunk layout is broken (truncated, absurd declared length, bad chunk type...)."""


class CardTooLargeError(CardError):
    """A text chunk or the card JSON is larger than the configured limit."""


class NoCardDataError(CardError):
    """The PNG is fine but carries no readable ``ccv3``/``chara`` chunk."""


class InvalidCardError(CardError):
    """The embedded or uploaded JSON is not a character card (wrong shape or field types)."""
