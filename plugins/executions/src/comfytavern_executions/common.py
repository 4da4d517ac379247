"""Small helpers shared by the HTTP and WebSocket layers."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from comfytavern.engine import safe_encoder
from comfytavern.engine.scheduler import Scheduler
from comfytavern.http import ApiError
from comfytavern.services import SCHEDULER

__all__ = ["safe_json", "scheduler_of"]


def scheduler_of(kernel: Any) -> Scheduler:
    scheduler = kernel.services.lookup(SCHEDULER)
    if scheduler is None:
        raise ApiError(503, "the run scheduler is not running")
    return scheduler


def safe_json(content: Any, status: int = 200) -> Response:
    """JSON that encodes any node output (unknown objects become placeholders)."""
    return Response(safe_encoder.encode(content), status, media_type="application/json")
