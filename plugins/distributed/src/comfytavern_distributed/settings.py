"""``plugins.settings.distributed``: off unless ``enabled`` is true; every key documented in docs/deployment.md."""

from __future__ import annotations

import os
import re
import secrets
import socket
from typing import Any

import msgspec

from comfytavern import ConfigError

__all__ = ["DistributedSettings", "default_instance_id", "parse_settings"]

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.\-:]{1,64}$")
_ID_RE = re.compile(r"^[A-Za-z0-9_.\-:@]{1,128}$")


class DistributedSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Distributed execution is used only when this is true (the in-process engine is the default).
    enabled: bool = False
    #: Redis (or Valkey) shared by every instance and worker; may carry a password (use the env var).
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every Redis key and channel: one Redis can serve several independent deployments.
    prefix: str = "ct"
    #: Whether this server instance also executes runs (``false`` = web only; workers execute).
    execute: bool = True
    #: Runs executed at once by one process; default ``execution.max_concurrent_workflows``.
    max_concurrency: int | None = None
    #: A run's lease; a worker silent for this long is dead and its runs end ``worker_lost``.
    lease_seconds: float = 15.0
    #: How often a worker renews the lease of each run it executes.
    heartbeat_seconds: float = 5.0
    #: How often each process looks for runs whose lease expired.
    janitor_seconds: float = 5.0
    #: Approximate cap on the run stream's length (finished entries are deleted anyway).
    stream_maxlen: int = 100_000
    #: Stream chunks (``NODE_YIELD``, ``WORKFLOW_INTERFACE_YIELD``) are merged for up to this long...
    coalesce_ms: float = 40.0
    #: ...or until this many characters are pending, before they cross the bus.
    coalesce_chars: int = 256
    #: How long the shared state of a finished run stays in Redis (the history lives in the run store).
    state_ttl_seconds: int = 24 * 3600
    #: Name of this process in the consumer group and in leases; default ``<host>-<pid>-<random>``.
    instance_id: str | None = None


def default_instance_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:60] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def parse_settings(raw: dict[str, Any]) -> DistributedSettings:
    where = "$.plugins.settings.distributed"
    try:
        settings = msgspec.convert(raw, DistributedSettings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration at {where}: {exc}") from None
    checks = [
        (bool(_PREFIX_RE.match(settings.prefix)), f"{where}.prefix: 1-64 characters of A-Z a-z 0-9 _ . - :"),
        (settings.redis_url.startswith(("redis://", "rediss://", "unix://")), f"{where}.redis_url: must start with redis://, rediss:// or unix://"),
        (settings.max_concurrency is None or settings.max_concurrency >= 1, f"{where}.max_concurrency: must be at least 1"),
        (settings.lease_seconds > 0, f"{where}.lease_seconds: must be positive"),
        (0 < settings.heartbeat_seconds <= settings.lease_seconds / 2, f"{where}.heartbeat_seconds: must be positive and at most half of lease_seconds"),
        (settings.janitor_seconds > 0, f"{where}.janitor_seconds: must be positive"),
        (settings.stream_maxlen >= 100, f"{where}.stream_maxlen: must be at least 100"),
        (settings.coalesce_ms >= 0, f"{where}.coalesce_ms: must not be negative"),
        (settings.coalesce_chars >= 1, f"{where}.coalesce_chars: must be at least 1"),
        (settings.state_ttl_seconds >= 60, f"{where}.state_ttl_seconds: must be at least 60"),
        (settings.instance_id is None or bool(_ID_RE.match(settings.instance_id)), f"{where}.instance_id: 1-128 characters of A-Z a-z 0-9 _ . - : @"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return settings
