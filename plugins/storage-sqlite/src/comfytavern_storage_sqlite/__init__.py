"""Embedded storage backends named ``sqlite``: accounts (users, sessions, keys, credentials) and
the run history, in the one SQLite file at ``data.database`` (WAL, versioned migrations).

Each store lives in its own module and is imported only when the configuration selects it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfytavern import ServiceKey, ServiceUse, StorageBackend, hookimpl, provides

if TYPE_CHECKING:
    from comfytavern_storage_sqlite.database import SqliteDatabase

#: This plugin's own service: one SqliteDatabase per file, shared by its stores.
SQLITE_DATABASES: ServiceKey[dict[Path, SqliteDatabase]] = ServiceKey(
    "sqlite_databases", "one SqliteDatabase per file, shared by the stores of this kernel"
)


def _factory(module: str, cls: str) -> Any:
    def create(kernel: Any, settings: Mapping[str, Any]) -> Any:
        path = settings.get("path")
        db_path = kernel.config.data_path("database") if path is None else kernel.config.data_path("root") / path
        from comfytavern_storage_sqlite.database import shared_database

        db = shared_database(kernel.services, db_path)
        store_cls = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
        return store_cls(db)

    return create


@hookimpl
def register_services() -> list[ServiceUse]:
    return [provides(SQLITE_DATABASES)]


@hookimpl
def register_storage_backends(kernel: Any) -> list[StorageBackend]:
    return [
        StorageBackend("sqlite", "accounts", _factory("accounts", "SqliteAccountStore"), "users, sessions, keys, credentials in SQLite"),
        StorageBackend("sqlite", "runs", _factory("runs", "SqliteRunStore"), "run history in SQLite"),
    ]
