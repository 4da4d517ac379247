"""Dialect-neutral SQL stores shared by the SQLite and PostgreSQL backends (a library both storage
plugins depend on, so neither imports the other and the kernel keeps only the store Protocols).

The accounts and run-history logic lives here once; a backend supplies only a
:class:`SqlDialect` (its connection, placeholder style, tie-break column, timestamp and JSON
encoding, integrity-error mapping) and its own migrations.
"""

from __future__ import annotations

from comfytavern_sqlstores.accounts import SqlAccountStore
from comfytavern_sqlstores.dialect import ConflictField, Row, SqlDialect
from comfytavern_sqlstores.runs import SqlRunStore

__all__ = ["ConflictField", "Row", "SqlAccountStore", "SqlDialect", "SqlRunStore"]
