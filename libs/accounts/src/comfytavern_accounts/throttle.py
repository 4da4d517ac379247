"""Login throttling that holds under parallel attempts.

Why this is more than a counter: checking a password is a slow Argon2id derivation. A throttle that
asks "under the limit?", then verifies, then records the failure lets N parallel guesses all pass
the question before the first failure is recorded. Here an attempt is *admitted* only while
``failures + attempts in flight`` is below the limit; the check and the admission are one step on
the event loop (no suspension point between them). An attempt that finds the limit full of
attempts still in flight waits for one of them to end and asks again; one that finds it full of
failures is refused. So at most the limit is ever verified, and concurrent *correct* logins from
one address still all get in, one slot after another.

Three sliding windows (``window`` seconds):

- **account + address** (``per_account_ip``): hard. Past it that address gets 429 for that account.
- **address** (``per_ip``): hard. Past it that address gets 429 for every account.
- **account, all addresses** (``per_account``): soft. Past it every attempt at the account waits
  ``slowdown`` seconds before its password is checked, but it is never refused: failures made by
  others, from other addresses, must not lock the owner out when they come with the right password
  from an address of their own.

In memory, per server process; bounded (at most ``max_keys`` counters, oldest dropped first, and
no counter keeps more stamps than its limit needs).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import anyio
from anyio.lowlevel import RunVar

__all__ = ["Attempt", "LoginThrottle", "Throttled", "ThrottleBusy"]

_Kind = Literal["pair", "ip", "account"]
_Key = tuple[_Kind, str]
_Outcome = Literal["failed", "succeeded", "abandoned"]
#: Waiters re-check at least this often even without a wake-up (a throttle driven from two event
#: loops, as tests may do, only wakes waiters of its own loop).
_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Attempt:
    """One admitted login attempt; hand it back to :meth:`LoginThrottle.finish` exactly once."""

    account: str
    ip: str
    #: Seconds to wait before checking the password (the per-account slow-down), usually 0.
    delay: float


class Throttled(Exception):
    """Too many failures for this account and address, or this address: retry after ``retry_after`` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"throttled for {retry_after:.0f} s")
        self.retry_after = retry_after


class ThrottleBusy(Exception):
    """An attempt waited too long for a slot held by attempts still in flight (a flood)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many login attempts in progress; try again shortly")
        self.retry_after = retry_after


class LoginThrottle:
    """Failure windows per account+address, per address and per account, plus attempts in flight."""

    def __init__(
        self,
        *,
        per_account_ip: int = 5,
        per_ip: int = 20,
        per_account: int = 100,
        window: float = 900.0,
        slowdown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.limits: dict[_Kind, int] = {"pair": per_account_ip, "ip": per_ip, "account": per_account}
        self.window = window
        self.slowdown = slowdown
        self.clock = clock
        self.max_keys = max_keys
        self._stamps: OrderedDict[_Key, deque[float]] = OrderedDict()
        self._in_flight: dict[_Key, int] = {}
        self._changed: RunVar[anyio.Event] = RunVar(f"ct-throttle-{id(self)}")

    @staticmethod
    def _keys(account: str, ip: str) -> tuple[_Key, _Key, _Key]:
        return ("pair", f"{account}\x00{ip}"), ("ip", ip), ("account", account)

    def _failures(self, key: _Key, now: float) -> int:
        stamps = self._stamps.get(key)
        if stamps is None:
            return 0
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._stamps[key]
        return len(stamps)

    def retry_after(self, account: str, ip: str) -> float | None:
        """Seconds until the hard limits let this account+address try again, ``None`` if now."""
        now = self.clock()
        wait = 0.0
        for key in self._keys(account, ip)[:2]:
            if self._failures(key, now) >= self.limits[key[0]]:
                # A counter keeps only its most recent ``limit`` stamps: the oldest frees the slot.
                wait = max(wait, self._stamps[key][0] + self.window - now)
        return wait if wait > 0 else None

    def slowed(self, account: str) -> bool:
        """Whether the account is past its own (soft) limit."""
        return self._failures(("account", account), self.clock()) >= self.limits["account"]

    def _has_room(self, account: str, ip: str) -> bool:
        now = self.clock()
        return all(
            self._failures(key, now) + self._in_flight.get(key, 0) < self.limits[key[0]]
            for key in self._keys(account, ip)[:2]
        )

    async def begin(self, account: str, ip: str, *, timeout: float = 30.0) -> Attempt:
        """Admit one attempt, waiting (up to ``timeout`` s) while the slots are taken by attempts
        in flight; raises :class:`Throttled` when they are taken by failures, or
        :class:`ThrottleBusy` when the wait runs out."""
        deadline = anyio.current_time() + timeout
        while True:
            wait = self.retry_after(account, ip)
            if wait is not None:
                raise Throttled(wait)
            if self._has_room(account, ip):
                break
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise ThrottleBusy(1.0)
            with anyio.move_on_after(min(remaining, _RECHECK_SECONDS)):
                await self._event().wait()
        for key in self._keys(account, ip)[:2]:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return Attempt(account=account, ip=ip, delay=self.slowdown if self.slowed(account) else 0.0)

    def finish(self, attempt: Attempt, outcome: _Outcome) -> None:
        """End an admitted attempt: ``failed`` counts it; ``succeeded`` clears the account+address
        counter; ``abandoned`` (the password was never checked, or the caller went away before
        learning the answer) leaves no trace."""
        pair, ip, account = self._keys(attempt.account, attempt.ip)
        for key in (pair, ip):
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)
        if outcome == "failed":
            now = self.clock()
            for key in (pair, ip, account):
                stamps = self._stamps.get(key)
                if stamps is None:
                    stamps = self._stamps[key] = deque(maxlen=self.limits[key[0]])
                stamps.append(now)
                self._stamps.move_to_end(key)
            while len(self._stamps) > self.max_keys:
                self._stamps.popitem(last=False)
        elif outcome == "succeeded":
            self._stamps.pop(pair, None)
        self._wake()

    def _event(self) -> anyio.Event:
        try:
            return self._changed.get()
        except LookupError:
            event = anyio.Event()
            self._changed.set(event)
            return event

    def _wake(self) -> None:
        try:
            event = self._changed.get()
        except (LookupError, RuntimeError):
            return  # nobody waits in this loop (or we are outside one)
        event.set()
        self._changed.set(anyio.Event())
