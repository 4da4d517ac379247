"""``GET /v1/models`` and ``POST /v1/chat/completions``.

Access follows the same rule as ``/api/prompt`` (a signed-in user; service keys need
``runs:read`` to list, ``runs:write`` to complete), checked here rather than by the generic route
guard so that a refusal comes in OpenAI's error shape: ``Authorization: Bearer undefined`` (a
client with no key configured) is a 401 ``invalid_api_key`` a chat client can show.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from comfytavern.auth import Principal, optional_principal
from comfytavern.engine import SchedulerClosed, WorkflowInvalid
from comfytavern.http import ApiError, RouteDoc, check_access, decode_json, require_json_content_type
from comfytavern.services import SCHEDULER
from comfytavern.storage import StorageNotConfigured
from comfytavern.storage.projects import ProjectStore
from comfytavern_openai_api.catalog import list_models, resolve_model
from comfytavern_openai_api.errors import OpenAIError, error_response
from comfytavern_openai_api.inputs import MAPPED_FIELDS, workflow_inputs
from comfytavern_openai_api.relay import RunFollower
from comfytavern_openai_api.respond import Completion
from comfytavern_openai_api.settings import OpenAIApiSettings
from comfytavern_openai_api.wire import ChatCompletion, ChatCompletionRequest, ErrorEnvelope, ModelList
from comfytavern_stored_runs import InterfaceInputError, stored_run_payload

__all__ = ["openai_routes"]

_encoder = msgspec.json.Encoder()
_DOC_COMMON: dict[str, Any] = {"auth": "user", "scope": "runs", "tags": ["openai"], "error": ErrorEnvelope}
MODELS_DOC = RouteDoc(
    summary="OpenAI-compatible: the caller's workflows usable as chat models",
    description=(
        "Every workflow of the caller whose interface has an input `messages` and an output `reply`, "
        "as `{\"object\": \"list\", \"data\": [{\"id\": \"<projectId>/<workflowId>\", \"object\": \"model\", "
        "\"created\", \"owned_by\"}]}`. Errors use OpenAI's shape `{\"error\": {\"message\", \"type\", "
        "\"param\", \"code\"}}`. See docs/openai-api.md."
    ),
    response=ModelList,
    responses={401: "no or bad key (OpenAI error shape)", 403: "key lacks runs:read"},
    **_DOC_COMMON,
)
COMPLETIONS_DOC = RouteDoc(
    summary="OpenAI-compatible chat completion by a workflow (model = <projectId>/<workflowId>)",
    description=(
        "Runs the workflow with the request's `messages` (and `temperature`, `max_tokens`, `top_p`, "
        "`seed`, `stop`... when the workflow has inputs of those keys); every other OpenAI field is "
        "accepted and ignored. Answers `chat.completion`, or with `\"stream\": true` "
        "`chat.completion.chunk` server-sent events ending with `data: [DONE]`. Disconnecting "
        "interrupts the run. Errors use OpenAI's shape. See docs/openai-api.md."
    ),
    body=ChatCompletionRequest,
    response=ChatCompletion,
    # With ``"stream": true``: ``data: {chat.completion.chunk}`` events, then ``data: [DONE]``.
    response_alternatives={"text/event-stream": str},
    responses={
        400: "malformed body or a bad value of a field the server uses",
        401: "no or bad key",
        403: "key lacks runs:write",
        404: "unknown model (model_not_found)",
        500: "the workflow failed (the node's message) or is invalid",
        503: "shutting down",
        504: "the workflow took longer than max_run_seconds",
    },
    **_DOC_COMMON,
)


def _authorise(request: Request, doc: RouteDoc) -> Principal:
    principal = optional_principal(request)
    try:
        check_access(principal, doc, request.method)
    except ApiError as exc:
        if exc.status == 401:
            if "authorization" in request.headers:
                message = "Incorrect API key provided. Use a ComfyTavern service API key (ctsk_...)."
            else:
                message = "You didn't provide an API key. Send a ComfyTavern service API key as 'Authorization: Bearer ctsk_...'."
            raise OpenAIError(401, message, "invalid_request_error", "invalid_api_key") from None
        raise OpenAIError(exc.status, exc.message, "permission_error", "insufficient_scope") from None
    assert principal is not None
    return principal


def _store(kernel: Any) -> ProjectStore:
    try:
        return kernel.storage.projects  # type: ignore[no-any-return]
    except StorageNotConfigured as exc:
        raise OpenAIError.server(str(exc), "not_configured", 503) from None


async def _decode(request: Request) -> ChatCompletionRequest:
    """The request body: 415 for a non-JSON type (what a cross-site form can send), 400 for an
    empty, malformed or too deeply nested body or a bad field, all in OpenAI's shape."""
    try:
        require_json_content_type(request)
    except ApiError as exc:
        raise OpenAIError(415, exc.message, "invalid_request_error", "unsupported_media_type") from None
    raw = await request.body()
    if not raw.strip():
        raise OpenAIError.bad_request("the request body is empty; expected a chat completion request (JSON)")
    try:
        return msgspec.convert(decode_json(raw), ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        message = str(exc)
        param = None
        if " - at `$." in message:
            message, _, path = message.rpartition(" - at `$.")
            param = path.rstrip("`")
        raise OpenAIError.bad_request(f"{message} (at {param})" if param else message, param=param) from None
    except msgspec.DecodeError as exc:
        raise OpenAIError.bad_request(f"We could not parse the JSON body of your request: {exc}") from None


def _payload(doc: dict[str, Any], project_id: str, workflow_id: str, inputs: dict[str, Any]) -> Any:
    try:
        return stored_run_payload(doc, project_id=project_id, workflow_id=workflow_id, inputs=inputs)
    except InterfaceInputError as exc:
        problem = exc.details[0]
        key = problem["key"]
        if key in MAPPED_FIELDS:
            raise OpenAIError.bad_request(problem["message"], param=key) from None
        if problem["problem"] == "missing":
            message = f"the workflow needs interface input {key!r}, which a chat request cannot set; give it a default"
        else:
            message = f"the workflow's interface does not fit a chat request: {exc.message}"
        raise OpenAIError.server(message, "workflow_invalid") from None
    except WorkflowInvalid as exc:
        raise OpenAIError.server(f"the workflow is invalid: {exc.message}", "workflow_invalid") from None


def openai_routes(kernel: Any, settings: OpenAIApiSettings) -> list[BaseRoute]:
    async def models(request: Request) -> Response:
        try:
            user = _authorise(request, MODELS_DOC)
            cards = await list_models(_store(kernel), user)
        except OpenAIError as exc:
            return error_response(exc)
        return Response(_encoder.encode(ModelList(cards)), media_type="application/json")

    async def completions(request: Request) -> Response:
        try:
            user = _authorise(request, COMPLETIONS_DOC)
            body = await _decode(request)
            scheduler = kernel.services.lookup(SCHEDULER)
            if scheduler is None:
                raise OpenAIError.server("the run scheduler is not running", "not_ready", 503)
            project_id, workflow_id, doc = await resolve_model(_store(kernel), user, body.model)
            payload = _payload(doc, project_id, workflow_id, workflow_inputs(body, doc))
            follower = RunFollower(scheduler, kernel.hub, user, max_buffer=settings.event_buffer)
            try:
                await follower.start(payload)
            except WorkflowInvalid as exc:
                raise OpenAIError.server(f"the workflow is invalid: {exc.message}", "workflow_invalid") from None
            except SchedulerClosed as exc:
                raise OpenAIError.server(str(exc), "server_shutting_down", 503) from None
        except OpenAIError as exc:
            return error_response(exc)
        completion = Completion(
            follower,
            model=body.model,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
            max_run_seconds=settings.max_run_seconds,
            keepalive_seconds=settings.keepalive_seconds,
        )
        if body.stream:
            return await completion.stream(request)
        return await completion.whole(request)

    listing = Route("/v1/models", models, methods=["GET"], name="openai_models")
    listing.doc = MODELS_DOC  # type: ignore[attr-defined]
    chat = Route("/v1/chat/completions", completions, methods=["POST"], name="openai_chat_completions")
    chat.doc = COMPLETIONS_DOC  # type: ignore[attr-defined]
    return [listing, chat]

