"""The one error type the tavern nodes raise: the message is what the editor shows on the node."""

from __future__ import annotations

__all__ = ["TavernError"]


class TavernError(ValueError):
    """Bad configuration or input data for a tavern node (names the config key, slot or item)."""
