"""comfytavern_accounts.throttle: hard limits per account+address and per address, a soft one per account,
and admission that holds under parallel attempts."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from comfytavern_accounts.throttle import Attempt, LoginThrottle, ThrottleBusy, Throttled

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def fail(throttle: LoginThrottle, account: str, ip: str) -> Attempt:
    attempt = await throttle.begin(account, ip)
    throttle.finish(attempt, "failed")
    return attempt


async def test_account_and_address_limit_is_hard_and_local() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_account_ip=3, per_ip=5, per_account=8, window=60, clock=clock)
    for _ in range(3):
        await fail(throttle, "alice", "1.1.1.1")
    with pytest.raises(Throttled) as refused:
        await throttle.begin("alice", "1.1.1.1")
    assert 0 < refused.value.retry_after <= 60
    # Someone else, or another account from that address, is not locked out.
    throttle.finish(await throttle.begin("alice", "2.2.2.2"), "succeeded")
    throttle.finish(await throttle.begin("bob", "1.1.1.1"), "succeeded")
    clock.now += 61
    assert throttle.retry_after("alice", "1.1.1.1") is None


async def test_address_limit_covers_every_account() -> None:
    throttle = LoginThrottle(per_account_ip=100, per_ip=4, per_account=100, window=60, clock=Clock())
    for index in range(4):
        await fail(throttle, f"user{index}", "9.9.9.9")
    with pytest.raises(Throttled):
        await throttle.begin("anyone", "9.9.9.9")


async def test_account_limit_slows_but_never_locks_out_a_new_address() -> None:
    throttle = LoginThrottle(per_account_ip=5, per_ip=20, per_account=6, window=60, slowdown=1.5, clock=Clock())
    first = await fail(throttle, "target", "10.0.0.0")
    assert first.delay == 0
    for index in range(1, 6):
        await fail(throttle, "target", f"10.0.0.{index}")
    assert throttle.slowed("target")
    late = await throttle.begin("target", "10.0.0.99")  # admitted, with the slow-down
    assert late.delay == 1.5
    throttle.finish(late, "succeeded")
    # Even far past the limit, from one more address each time.
    for index in range(100, 200):
        await fail(throttle, "target", f"10.0.1.{index % 250}")
    fresh = await throttle.begin("target", "192.0.2.1")
    assert fresh.delay == 1.5
    throttle.finish(fresh, "succeeded")
    assert not throttle.slowed("someone-else")


async def test_success_clears_the_pair_abandoned_leaves_no_trace_and_memory_is_bounded() -> None:
    throttle = LoginThrottle(per_account_ip=2, per_ip=100, per_account=100, window=60, max_keys=30)
    await fail(throttle, "alice", "1.1.1.1")
    throttle.finish(await throttle.begin("alice", "1.1.1.1"), "abandoned")  # not counted
    throttle.finish(await throttle.begin("alice", "1.1.1.1"), "succeeded")  # clears the pair
    await fail(throttle, "alice", "1.1.1.1")
    throttle.finish(await throttle.begin("alice", "2.2.2.2"), "succeeded")  # clears nothing here
    await fail(throttle, "alice", "1.1.1.1")
    assert throttle.retry_after("alice", "1.1.1.1") is not None
    for index in range(100):
        await fail(throttle, f"user{index}", f"ip{index}")
    assert len(throttle._stamps) <= 30
    for index in range(500):
        await fail(throttle, "hammered", f"ip-{index}")
    assert len(throttle._stamps[("account", "hammered")]) == 100  # never more stamps than the limit
    assert not throttle._in_flight


async def test_parallel_wrong_attempts_are_admitted_at_most_up_to_the_limit() -> None:
    throttle = LoginThrottle(per_account_ip=3, per_ip=20, per_account=100, window=900)
    outcomes: Counter[str] = Counter()

    async def guess() -> None:
        try:
            attempt = await throttle.begin("alice", "1.1.1.1")
        except Throttled:
            outcomes["throttled"] += 1
            return
        outcomes["checked"] += 1
        await anyio.sleep(0.05)  # the slow password check
        throttle.finish(attempt, "failed")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(guess)
    assert outcomes == {"checked": 3, "throttled": 17}


async def test_parallel_right_attempts_from_one_address_all_get_in() -> None:
    throttle = LoginThrottle(per_account_ip=5, per_ip=20, per_account=100, window=900)
    admitted: list[Attempt] = []

    async def login() -> None:
        attempt = await throttle.begin("alice", "1.1.1.1")
        admitted.append(attempt)
        await anyio.sleep(0.05)
        throttle.finish(attempt, "succeeded")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(login)
    assert len(admitted) == 12 and not throttle._in_flight and not throttle._stamps


async def test_a_wait_for_slots_held_by_attempts_that_never_end_is_bounded() -> None:
    throttle = LoginThrottle(per_account_ip=2, per_ip=20, per_account=100, window=900)
    await throttle.begin("alice", "1.1.1.1")
    await throttle.begin("alice", "1.1.1.1")  # both never finish: a stuck check
    with anyio.fail_after(30):
        with pytest.raises(ThrottleBusy) as busy:
            await throttle.begin("alice", "1.1.1.1", timeout=0.2)
    assert busy.value.retry_after >= 1
