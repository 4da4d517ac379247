"""What a SQL backend must provide so the generic stores can run on it.

Statements are written once with ``?`` placeholders; the dialect translates them for its driver.
Rows come back as mappings addressed by column name (``sqlite3.Row`` and psycopg's ``dict_row``
both qualify).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["ConflictField", "Row", "SqlDialect"]

#: A result row, addressed by column name.
Row = Mapping[str, Any]

#: Which uniqueness or reference rule an integrity error broke (see ``SqlDialect.conflict_field``).
ConflictField = Literal["username", "lookup_id", "user_id", "id"]


@runtime_checkable
class SqlDialect(Protocol):
    """A backend's connection plus the handful of details in which SQL dialects differ."""

    #: Column that breaks ties between rows with equal timestamps, in insertion order.
    tiebreak: str
    #: ``OFFSET ?`` without a limit (SQLite needs ``LIMIT -1`` in front).
    offset_only: str

    async def open(self, component: str, migrations: Sequence[str]) -> None:
        """Connect and apply ``component``'s migrations (closing again if they fail, where needed)."""
        ...

    async def close(self) -> None: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of affected rows."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def rewrite_rows(
        self, select: str, update: str, params_for: Callable[[Row], Sequence[Any]]
    ) -> int:
        """In one transaction, run ``update`` with ``params_for(row)`` for every row ``select`` finds.

        Returns the number of rows rewritten. Backends with row locks lock the selected rows.
        """
        ...

    def ts_to_db(self, value: datetime) -> Any:
        """A timezone-aware datetime as stored (raises ``ValueError`` for naive ones)."""
        ...

    def ts_from_db(self, value: Any) -> datetime: ...

    def json_to_db(self, value: Any) -> Any:
        """Built-in JSON values (lists, dicts, ...) as stored in a JSON column."""
        ...

    def json_from_db(self, value: Any) -> Any: ...

    def conflict_field(self, exc: BaseException) -> ConflictField | None:
        """For an integrity error, the rule it broke; ``None`` for any other exception."""
        ...
