"""Test helpers for code that checks passwords (login routes, auth modes): fault injection.

``frozen_password_hashing`` blocks every Argon2id derivation in the process, as one that never
returns would, so a test can show that logins then answer 503 instead of hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from comfytavern_accounts import passwords

__all__ = ["frozen_password_hashing"]


@contextmanager
def frozen_password_hashing(*, at_most: float = 20.0) -> Iterator[Any]:
    """Fault injection: while inside, every Argon2id derivation in the process blocks, as one
    that never returns would. Leaving (or ``at_most`` seconds, whichever comes first, so a test of
    code that would hang still ends) lets them go; the yielded function lets them go early."""
    passwords._ARGON2_LOCK.acquire()
    released = threading.Event()
    guard = threading.Lock()

    def release() -> None:
        with guard:
            if not released.is_set():
                released.set()
                passwords._ARGON2_LOCK.release()

    timer = threading.Timer(at_most, release)
    timer.daemon = True
    timer.start()
    try:
        yield release
    finally:
        timer.cancel()
        release()
