from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from comfytavern_testing_contracts.services import postgres_dsn, postgres_schema


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def pg_settings() -> Iterator[dict[str, Any]]:
    """``storage.settings.postgres`` for a schema of this test's own (dropped afterwards)."""
    with postgres_schema() as schema:
        yield {"dsn": postgres_dsn(), "schema": schema, "min_size": 1, "max_size": 4}
