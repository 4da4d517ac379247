"""Real PostgreSQL and Redis for tests, isolated per test.

Each test gets its own schema (``ct_t_<random>``) in the test database and its own Redis key prefix
(``cttest:<random>``); both are removed afterwards, so tests run concurrently with each other and
with other work on the machine. When a server is down the test FAILS with a message saying which
server and how it is configured: CI has both, and a silent skip would hide a broken deployment.

Addresses come from ``CT_TEST_POSTGRES_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
and ``CT_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "postgres_dsn",
    "postgres_schema",
    "redis_prefix",
    "redis_url",
    "require_postgres",
    "require_redis",
]

DEFAULT_TEST_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"


def postgres_dsn() -> str:
    return os.environ.get("CT_TEST_POSTGRES_DSN", DEFAULT_TEST_POSTGRES_DSN)


def redis_url() -> str:
    return os.environ.get("CT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)


def _fail(message: str) -> None:
    import pytest

    pytest.fail(message, pytrace=False)


def require_postgres(dsn: str | None = None) -> None:
    """Fail the calling test with a clear message unless PostgreSQL answers at ``dsn``."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    dsn = dsn or postgres_dsn()
    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        parts = conninfo_to_dict(dsn)
        parts.pop("password", None)
        _fail(
            f"PostgreSQL is not reachable at {make_conninfo('', **parts)} ({str(exc).strip()}). "
            "These tests use a real server: start PostgreSQL on 127.0.0.1:5432 (trust auth, database "
            "'test') or point CT_TEST_POSTGRES_DSN at one."
        )


def require_redis(url: str | None = None) -> None:
    """Fail the calling test with a clear message unless Redis answers at ``url``."""
    import redis

    url = url or redis_url()
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        _fail(
            f"Redis is not reachable at {url} ({exc}). These tests use a real server: start Redis on "
            "127.0.0.1:6379 or point CT_TEST_REDIS_URL at one."
        )


@contextmanager
def postgres_schema(dsn: str | None = None) -> Iterator[str]:
    """A fresh schema name that exists for the duration of the block, then is dropped with its tables."""
    import psycopg
    from psycopg import sql

    dsn = dsn or postgres_dsn()
    require_postgres(dsn)
    name = f"ct_t_{secrets.token_hex(6)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Bounded: a connection some crashed process left inside a transaction must not hang the suite.
            conn.execute("SET lock_timeout = '15s'")
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@contextmanager
def redis_prefix(url: str | None = None) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted afterwards."""
    import redis

    url = url or redis_url()
    require_redis(url)
    prefix = f"cttest:{secrets.token_hex(6)}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{prefix}:*", count=500):
                batch.append(key)
                if len(batch) >= 500:
                    client.delete(*batch)
                    batch.clear()
            if batch:
                client.delete(*batch)
        finally:
            client.close()
