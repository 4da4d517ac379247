"""``plugins.settings.openai-api`` in config.json."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["OpenAIApiSettings"]


class OpenAIApiSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Longest a completion may take (seconds); the run is then interrupted and the client gets
    #: a 504 (or, once streaming, an error event).
    max_run_seconds: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    #: While a stream is silent, a ``: keep-alive`` comment is sent this often (seconds). The
    #: response's first byte is also held back this long at most, so a workflow that fails at
    #: once answers with a real error status instead of a stream.
    keepalive_seconds: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    #: Run events buffered per request before the relay falls back to the final result.
    event_buffer: Annotated[int, msgspec.Meta(ge=16)] = 100_000
