"""Storage backends named ``postgres`` for projects, accounts and the run history, so several
server instances (and ``comfytavern worker`` processes) share one state.

Settings: ``storage.settings.postgres = {"dsn", "schema", "min_size", "max_size", "timeout"}``.
The three stores of one kernel share one connection pool (``kernel.services``), and each applies
its own versioned migrations. See docs/deployment.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from comfytavern import StorageBackend, hookimpl

__all__ = ["register_storage_backends"]


def _factory(module: str, cls: str) -> Any:
    def create(kernel: Any, settings: Mapping[str, Any]) -> Any:
        from comfytavern_storage_postgres.database import parse_settings, shared_database

        db = shared_database(kernel.services, parse_settings(settings))
        store_cls = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
        return store_cls(db)

    return create


@hookimpl
def register_storage_backends(kernel: Any) -> list[StorageBackend]:
    return [
        StorageBackend("postgres", "projects", _factory("projects", "PostgresProjectStore"), "projects and workflows in PostgreSQL"),
        StorageBackend("postgres", "accounts", _factory("accounts", "PostgresAccountStore"), "users, sessions, keys, credentials in PostgreSQL"),
        StorageBackend("postgres", "runs", _factory("runs", "PostgresRunStore"), "run history in PostgreSQL"),
    ]
