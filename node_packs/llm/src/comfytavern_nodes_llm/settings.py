"""Operator settings for the LLM nodes, read from ``plugins.settings.llm`` in ``config.json``.

Node packs have no plugin hooks, so the nodes read the server :class:`~comfytavern.Config` from
the ``CONFIG`` service (``ctx.services.lookup(CONFIG)``) on every run. A typo in a key stops the node with a message naming
the key (the struct forbids unknown fields) instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from comfytavern import Services
from comfytavern.services import CONFIG

__all__ = ["SETTINGS_KEY", "LlmSettings", "LlmSettingsError", "parse_settings", "settings_from_services"]

#: Name under ``plugins.settings`` in ``config.json``.
SETTINGS_KEY = "llm"


class LlmSettingsError(ValueError):
    """``plugins.settings.llm`` is invalid; the message names the key."""


class LlmSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Everything an operator can tune. Defaults are safe for a public multi-user server."""

    #: Let ``APISettings.use_env_vars`` read ``OPENAI_API_KEY`` / ``OPENAI_API_BASE`` from the
    #: server's environment. Off by default: the server's own key would be spent by every user.
    allow_env_keys: bool = False
    #: In multi-user mode, allow base URLs that resolve to loopback, private, link-local or other
    #: non-public addresses (SSRF guard). Single-user modes always allow them (local LLM servers).
    allow_private_base_urls: bool = False
    #: Networks (CIDR or single addresses) allowed even when private addresses are refused,
    #: e.g. ``["10.0.0.5", "192.168.1.0/24"]`` for a known in-house LLM server.
    private_base_url_allowlist: list[str] = msgspec.field(default_factory=list)
    #: Endpoint ``GenericLlmRequest`` uses when no ``api_settings`` are connected.
    default_base_url: str = "https://api.openai.com/v1"
    #: Stored-credential service name used when a node names none.
    default_credential_service: str = "openai"
    #: Seconds to establish a connection (TCP + TLS).
    connect_timeout_seconds: float = 10.0
    #: Longest silence allowed between two pieces of a response (before the first token too).
    read_timeout_seconds: float = 120.0
    #: Seconds to send the request body.
    write_timeout_seconds: float = 30.0
    #: Seconds to wait for a free pooled connection.
    pool_timeout_seconds: float = 10.0
    #: Extra attempts after a connection failure, timeout, 408/409/429 or 5xx, only while no
    #: token has been received (never after streaming started).
    max_retries: int = 2
    #: First retry delay; doubles each attempt, capped by ``max_retry_delay_seconds``.
    retry_backoff_seconds: float = 0.5
    #: Cap for one retry delay, including a server's ``Retry-After`` (longer waits fail at once).
    max_retry_delay_seconds: float = 8.0
    #: Connections kept per server process and event loop (shared by every LLM node running).
    max_connections: int = 64
    #: Ask streaming endpoints for a final usage chunk (``stream_options.include_usage``).
    #: Turn off for old servers that reject the field.
    request_usage: bool = True
    #: Use ``HTTP(S)_PROXY`` / ``NO_PROXY`` from the environment for LLM calls.
    trust_env: bool = False
    #: Largest non-streaming response body accepted, in bytes.
    max_response_bytes: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        positive = {
            "connect_timeout_seconds": self.connect_timeout_seconds,
            "read_timeout_seconds": self.read_timeout_seconds,
            "write_timeout_seconds": self.write_timeout_seconds,
            "pool_timeout_seconds": self.pool_timeout_seconds,
            "max_connections": self.max_connections,
            "max_response_bytes": self.max_response_bytes,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ValueError(f"{key} must be positive")
        if self.max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if self.retry_backoff_seconds < 0 or self.max_retry_delay_seconds < 0:
            raise ValueError("retry delays must not be negative")


def parse_settings(raw: Mapping[str, Any] | None) -> LlmSettings:
    try:
        return msgspec.convert(dict(raw or {}), LlmSettings)
    except (msgspec.ValidationError, ValueError) as exc:
        raise LlmSettingsError(f"invalid configuration at $.plugins.settings.{SETTINGS_KEY}: {exc}") from None


def settings_from_services(services: Services) -> tuple[LlmSettings, bool]:
    """``(settings, multi_user)`` from the server config in ``services`` (defaults without one)."""
    config = services.lookup(CONFIG)
    if config is None:
        return LlmSettings(), False
    raw = config.plugins.settings.get(SETTINGS_KEY, {})
    multi_user = config.auth.mode == "multi-user"
    return parse_settings(raw), multi_user
