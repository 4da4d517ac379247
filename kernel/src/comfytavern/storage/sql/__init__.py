"""Dialect-neutral SQL stores shared by the SQLite and PostgreSQL backends.

The accounts and run-history logic lives here once; a backend supplies only a
:class:`SqlDialect` (its connection, placeholder style, tie-break column, timestamp and JSON
encoding, integrity-error mapping) and its own migrations.
"""

from __future__ import annotations

from comfytavern.storage.sql.accounts import SqlAccountStore
from comfytavern.storage.sql.dialect import ConflictField, Row, SqlDialect
from comfytavern.storage.sql.runs import SqlRunStore

__all__ = ["ConflictField", "Row", "SqlAccountStore", "SqlDialect", "SqlRunStore"]
