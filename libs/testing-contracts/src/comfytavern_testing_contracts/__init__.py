"""Reusable test material for storage and scale-out backends.

- :mod:`~comfytavern_testing_contracts.accounts`: ``AccountStoreContract``, the behaviour every
  ``storage.accounts`` backend must have;
- :mod:`~comfytavern_testing_contracts.projects`: ``ProjectStoreContract`` for ``storage.projects``;
- :mod:`~comfytavern_testing_contracts.runs`: ``RunStoreContract`` for ``storage.runs``;
- :mod:`~comfytavern_testing_contracts.services`: a private PostgreSQL schema and Redis key prefix
  per test against the real local servers (failing, never skipping, when a server is down).

A backend's tests subclass a contract and provide an async ``store`` fixture yielding an opened,
empty store. The embedded backends run their contracts in their own plugin's tests;
``tests/test_storage_contracts.py`` runs them against PostgreSQL and the kernel's in-memory run
history. A distribution of its own (``libs/testing-contracts``, needs pytest) so the kernel ships no
test code; install it in a backend's test environment only.
"""
