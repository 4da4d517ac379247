"""HTTP routes for runs: submit, list, status (optionally waiting), events (SSE), interrupt,
history and queue statistics. Every run belongs to its submitter: other users get 404 for it,
administrators see all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from comfytavern.auth import current_principal
from comfytavern.engine import ExecutionPayload, PayloadError, decode_payload, safe_encoder
from comfytavern.events import HubEvent
from comfytavern.http import ApiError, json_response, require_json_content_type, route
from comfytavern.storage.runs import FINAL_STATUSES, RunRecord
from comfytavern_executions.common import PromptAccepted, safe_json, scheduler_of, seconds_param, submit_and_answer
from comfytavern_executions.settings import ExecutionsSettings

__all__ = ["http_routes"]


class PromptInfo(msgspec.Struct, rename="camel", omit_defaults=True):
    prompt_id: str
    status: str
    submitted_at: int
    owner_id: str | None = None
    workflow_id: str | None = None
    workflow_name: str | None = None


class ExecutionsList(msgspec.Struct):
    running: list[PromptInfo]
    pending: list[PromptInfo]


class SystemStats(msgspec.Struct, rename="camel"):
    max_concurrent_workflows: int
    running_executions: int
    pending_executions: int


class RunEventFrame(msgspec.Struct):
    """One server-sent event of ``GET /api/prompt/{id}/events`` (documentation only: the frames
    are written by :func:`sse_frame`). ``event`` is the WebSocket message type (``error`` when the
    backlog overflowed), ``data`` the payload as JSON text. Comment lines (``: keep-alive``)
    carry no event."""

    event: str
    data: Annotated[str, msgspec.Meta(extra_json_schema={"contentMediaType": "application/json"})]


class InterruptResult(msgspec.Struct):
    success: bool
    message: str


class HistoryPage(msgspec.Struct):
    items: list[RunRecord]
    total: int
    limit: int
    offset: int


def _int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer", {"value": raw}) from None
    if not low <= value <= high:
        raise ApiError(400, f"query parameter {name!r} must be between {low} and {high}")
    return value


def _not_found(prompt_id: str) -> ApiError:
    return ApiError(404, f"Execution with promptId {prompt_id} not found.")


def sse_frame(event: HubEvent) -> bytes:
    return b"event: " + event.type.encode() + b"\ndata: " + safe_encoder.encode(event.payload) + b"\n\n"


def _is_final(event: HubEvent) -> bool:
    return event.type == "EXECUTION_STATUS_UPDATE" and event.payload.get("status") in FINAL_STATUSES


def http_routes(kernel: Any, settings: ExecutionsSettings) -> list[BaseRoute]:
    async def submit(request: Request) -> Response:
        user = current_principal(request)
        wait = seconds_param(request, "wait", maximum=settings.wait_max_seconds)
        require_json_content_type(request)
        body = await request.body()
        if not body.strip():
            raise ApiError(400, "request body is empty; expected a workflow execution payload")
        try:
            payload = decode_payload(body)
        except PayloadError as exc:
            raise ApiError(400 if exc.message == "malformed JSON" else 422, exc.message, exc.details) from None
        return await submit_and_answer(kernel, payload, user, wait)

    async def executions(request: Request) -> Response:
        return json_response(scheduler_of(kernel).executions(current_principal(request)))

    async def status(request: Request) -> Response:
        user = current_principal(request)
        prompt_id = request.path_params["prompt_id"]
        wait = seconds_param(request, "wait", maximum=settings.wait_max_seconds)
        scheduler = scheduler_of(kernel)
        record = await (scheduler.wait(prompt_id, user, wait) if wait > 0 else scheduler.get(prompt_id, user))
        if record is None:
            raise _not_found(prompt_id)
        return safe_json(record)

    async def events(request: Request) -> Response:
        user = current_principal(request)
        prompt_id = request.path_params["prompt_id"]
        scheduler = scheduler_of(kernel)
        subscription = kernel.hub.subscribe(max_buffer=settings.ws_max_queue, accept=lambda e: e.prompt_id == prompt_id)
        try:
            replay = await scheduler.replay(prompt_id, user)
        except BaseException:
            subscription.close()
            raise
        if replay is None:
            subscription.close()
            raise _not_found(prompt_id)

        async def stream() -> AsyncIterator[bytes]:
            with subscription:
                for replayed in replay:
                    yield sse_frame(replayed)
                    if _is_final(replayed):
                        return
                while True:
                    event: HubEvent | None = None
                    with anyio.move_on_after(settings.sse_keepalive_seconds):
                        try:
                            event = await subscription.receive()
                        except anyio.EndOfStream:
                            message = safe_encoder.encode(
                                {"message": "event backlog overflowed; read the status with GET /api/prompt/{id}"}
                            )
                            yield b"event: error\ndata: " + message + b"\n\n"
                            return
                    if event is None:
                        yield b": keep-alive\n\n"
                        continue
                    yield sse_frame(event)
                    if _is_final(event):
                        return

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def interrupt(request: Request) -> Response:
        user = current_principal(request)
        prompt_id = request.path_params["prompt_id"]
        if not await scheduler_of(kernel).interrupt(prompt_id, user):
            raise ApiError(
                404,
                f"Execution {prompt_id} not found in running or waiting queue, or already finished/interrupted.",
            )
        return json_response(InterruptResult(True, f"Interrupt signal sent for execution {prompt_id}."))

    async def history(request: Request) -> Response:
        user = current_principal(request)
        limit = _int_param(request, "limit", 50, low=1, high=500)
        offset = _int_param(request, "offset", 0, low=0, high=10**9)
        items, total = await scheduler_of(kernel).history(user, limit=limit, offset=offset)
        return safe_json(HistoryPage(items, total, limit, offset))

    async def system_stats(request: Request) -> Response:
        return json_response(scheduler_of(kernel).stats())

    common: dict[str, Any] = {"auth": "user", "scope": "runs", "tags": ["executions"]}
    return [
        route(
            "/api/prompt",
            submit,
            methods=["POST"],
            summary="Run a workflow (the editor's execution payload); ?wait=<s> returns the result",
            description=(
                "Validates the payload (422 with per-node errors), queues the run and answers "
                "`{promptId}`. With `?wait=<seconds>` it answers the run record once the run has "
                "finished, or its current state when the time is up."
            ),
            body=ExecutionPayload,
            response=PromptAccepted,
            responses={400: "malformed JSON", 422: "invalid payload or workflow", 503: "shutting down"},
            **common,
        ),
        route("/api/executions", executions, summary="Your running and queued runs", response=ExecutionsList, **common),
        route(
            "/api/prompt/{prompt_id}",
            status,
            summary="Status, node statuses, outputs and error of a run (during and after it); ?wait=<s>",
            response=RunRecord,
            responses={404: "no such run (or not yours)"},
            **common,
        ),
        route(
            "/api/prompt/{prompt_id}/events",
            events,
            summary="Server-sent events of a run: past events replayed, then live until the final status",
            content_type="text/event-stream",
            response=RunEventFrame,
            responses={404: "no such run (or not yours)"},
            **common,
        ),
        route(
            "/api/interrupt/{prompt_id}",
            interrupt,
            methods=["POST", "DELETE"],
            summary="Cancel a queued or running run now",
            response=InterruptResult,
            responses={404: "not queued or running (or not yours)"},
            **common,
        ),
        route(
            "/api/history",
            history,
            summary="Finished and active runs, newest first (?limit=&offset=)",
            response=HistoryPage,
            **common,
        ),
        route(
            "/api/system_stats",
            system_stats,
            summary="Queue figures: maxConcurrentWorkflows, runningExecutions, pendingExecutions",
            response=SystemStats,
            **common,
        ),
    ]
