"""``comfytavern worker``: a process that only executes queued runs (same engine, same nodes, same
storage as the servers; no HTTP). SIGTERM or Ctrl-C stops it gracefully: it claims nothing more,
the runs it executes end ``interrupted`` and are recorded as such. A worker killed outright
(SIGKILL, power loss) stops renewing its leases; its runs end ``worker_lost`` within
``lease_seconds`` + ``janitor_seconds``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

import anyio
import msgspec

from comfytavern import ConfigError

log = logging.getLogger("comfytavern.distributed.worker")

#: Printed on stdout once the worker claims runs (process supervisors and tests wait for it).
READY_LINE = "comfytavern worker ready"


def configure_worker(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, help="runs executed at once (plugins.settings.distributed.max_concurrency)")
    parser.add_argument("--id", dest="worker_id", help="worker id in the consumer group (plugins.settings.distributed.instance_id)")


def run_worker(kernel: Any, args: argparse.Namespace) -> int:
    from comfytavern_distributed import WORKER_SETTINGS, settings_of
    from comfytavern_distributed.settings import parse_settings

    try:
        base = settings_of(kernel)
        changes: dict[str, Any] = {"enabled": True, "execute": True}
        if args.concurrency is not None:
            changes["max_concurrency"] = args.concurrency
        if args.worker_id:
            changes["instance_id"] = args.worker_id
        settings = parse_settings({**msgspec.to_builtins(base), **changes})
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    kernel.services.provide(WORKER_SETTINGS, settings)
    try:
        return anyio.run(_serve, kernel)
    except KeyboardInterrupt:
        return 0


async def _serve(kernel: Any) -> int:
    started = False
    try:
        async with kernel.lifespan():
            started = True
            from comfytavern_distributed import DISTRIBUTED_RUNS

            runs = kernel.services.require(DISTRIBUTED_RUNS)
            print(
                f"{READY_LINE}: {runs.instance_id}, up to {runs.max_concurrency} runs at once "
                f"(prefix {runs.settings.prefix!r})",
                flush=True,
            )
            await _wait_for_stop_signal()
            log.info("worker %s stopping: claiming nothing more, interrupting its runs", runs.instance_id)
    except Exception as exc:  # noqa: BLE001 - any start-up failure is reported plainly
        if started:
            raise
        # Configuration, storage or Redis problems: one line, no traceback, exit code 2.
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


async def _wait_for_stop_signal() -> None:
    if sys.platform == "win32":  # no signal receiver there: Ctrl-C raises KeyboardInterrupt
        await anyio.sleep_forever()
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return
