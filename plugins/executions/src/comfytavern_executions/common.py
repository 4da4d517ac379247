"""Small helpers shared by the HTTP and WebSocket layers."""

from __future__ import annotations

import math
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from comfytavern.auth import Principal
from comfytavern.engine import SchedulerClosed, WorkflowInvalid, safe_encoder
from comfytavern.engine.payload import ExecutionPayload
from comfytavern.engine.scheduler import Scheduler
from comfytavern.http import ApiError, json_response
from comfytavern.services import SCHEDULER

__all__ = ["PromptAccepted", "seconds_param", "safe_json", "scheduler_of", "submit_and_answer"]


class PromptAccepted(msgspec.Struct, rename="camel"):
    prompt_id: str


def scheduler_of(kernel: Any) -> Scheduler:
    scheduler = kernel.services.lookup(SCHEDULER)
    if scheduler is None:
        raise ApiError(503, "the run scheduler is not running")
    return scheduler


def safe_json(content: Any, status: int = 200) -> Response:
    """JSON that encodes any node output (unknown objects become placeholders)."""
    return Response(safe_encoder.encode(content), status, media_type="application/json")


def seconds_param(request: Request, name: str, *, maximum: float) -> float:
    """A query parameter in seconds (``wait``): 0 when absent, 400 unless a finite number >= 0,
    capped at ``maximum``."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be a number of seconds", {"value": raw}) from None
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, f"query parameter {name!r} must be a non-negative number of seconds")
    return min(value, maximum)


async def submit_and_answer(kernel: Any, payload: ExecutionPayload, user: Principal, wait: float) -> Response:
    """Submit a run over HTTP: ``{promptId}``, or with ``wait`` the record once it ends (or when
    the wait is over); 422 for an invalid workflow, 503 while shutting down or when the run could
    not be recorded."""
    scheduler = scheduler_of(kernel)
    try:
        prompt_id = await scheduler.submit(payload, user, source="http")
    except WorkflowInvalid as exc:
        raise ApiError(422, exc.message, exc.details()) from None
    except SchedulerClosed as exc:
        raise ApiError(503, str(exc)) from None
    if wait > 0:
        return safe_json(await scheduler.wait(prompt_id, user, wait))
    return json_response(PromptAccepted(prompt_id))
