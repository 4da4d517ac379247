"""Reusable test material for storage and scale-out backends.

- :mod:`~comfytavern.testing_contracts.accounts`: ``AccountStoreContract``, the behaviour every
  ``storage.accounts`` backend must have;
- :mod:`~comfytavern.testing_contracts.projects`: ``ProjectStoreContract`` for ``storage.projects``;
- :mod:`~comfytavern.testing_contracts.runs`: ``RunStoreContract`` for ``storage.runs``;
- :mod:`~comfytavern.testing_contracts.services`: a private PostgreSQL schema and Redis key prefix
  per test against the real local servers (failing, never skipping, when a server is down).

A backend's tests subclass a contract and provide an async ``store`` fixture yielding an opened,
empty store. The embedded backends run their contracts in their own plugin's tests;
``tests/test_storage_contracts.py`` runs them against PostgreSQL and the kernel's in-memory run
history. The kernel does not depend on pytest, psycopg or redis: import these modules from tests
only.
"""
