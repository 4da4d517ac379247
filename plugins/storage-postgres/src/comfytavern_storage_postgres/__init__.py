"""Storage backends named ``postgres`` for projects, accounts and the run history, so several
server instances (and ``comfytavern worker`` processes) share one state.

Settings: ``storage.settings.postgres = {"dsn", "schema", "min_size", "max_size", "timeout"}``.
The three stores of one kernel share one connection pool (the ``POSTGRES_DATABASES`` service), and each applies
its own versioned migrations. See docs/deployment.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from comfytavern import ServiceKey, ServiceUse, StorageBackend, hookimpl, provides

if TYPE_CHECKING:
    from comfytavern_storage_postgres.database import PostgresDatabase

__all__ = ["POSTGRES_DATABASES", "register_services", "register_storage_backends"]

#: This plugin's own service: the pools of one kernel by (DSN, schema), shared by its three stores.
POSTGRES_DATABASES: ServiceKey[dict[tuple[str, str], PostgresDatabase]] = ServiceKey(
    "postgres_databases", "one PostgresDatabase per (DSN, schema), shared by the stores of this kernel"
)


@hookimpl
def register_services() -> list[ServiceUse]:
    return [provides(POSTGRES_DATABASES)]


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
