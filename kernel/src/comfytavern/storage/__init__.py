"""Storage interfaces (typing.Protocol per kind) and the set of stores the kernel opened.

Backends live in plugins (hook ``register_storage_backends``) and are chosen per kind in the
configuration (``storage.projects``, ``storage.accounts``, ``storage.runs``).
"""

from __future__ import annotations

from typing import Any

from comfytavern.records import STORAGE_KINDS, StorageKind

__all__ = ["StorageNotConfigured", "StorageSet"]


class StorageNotConfigured(RuntimeError):
    """A feature needs a kind of storage that the configuration left empty."""


class StorageSet:
    """The open stores, one per kind: ``kernel.storage.projects`` and so on."""

    def __init__(self) -> None:
        self._stores: dict[str, Any] = {}

    def set(self, kind: StorageKind, store: Any) -> None:
        self._stores[kind] = store

    def get(self, kind: StorageKind) -> Any:
        try:
            return self._stores[kind]
        except KeyError:
            raise StorageNotConfigured(
                f"no {kind!r} storage is configured (set storage.{kind} in config.json)"
            ) from None

    def has(self, kind: StorageKind) -> bool:
        return kind in self._stores

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self._stores[k]) for k in STORAGE_KINDS if k in self._stores]

    @property
    def projects(self) -> Any:
        return self.get("projects")

    @property
    def accounts(self) -> Any:
        return self.get("accounts")

    @property
    def runs(self) -> Any:
        return self.get("runs")
