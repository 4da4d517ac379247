"""Reusable test material for storage and scale-out backends.

- :mod:`comfytavern.testing_contracts.services`: a private PostgreSQL schema and Redis key prefix per
  test against the real local servers (failing, never skipping, when a server is down).

The kernel does not depend on psycopg or redis: those are imported only when a helper is used.
"""
