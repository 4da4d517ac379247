"""The editor's execution payload (``PROMPT_REQUEST`` / ``POST /api/prompt``) as msgspec Structs.

Field names are the editor's camelCase. Unknown fields are ignored (the editor adds extras such as
``clientId``), but every declared field is type-checked, so a malformed payload is rejected with
the exact path of the first problem instead of failing somewhere inside the engine.
"""

from __future__ import annotations

from typing import Any

import msgspec

from comfytavern.http import MAX_JSON_DEPTH, JsonTooDeep, _nesting_exceeds, decode_json, validation_details

__all__ = [
    "ExecutionEdge",
    "ExecutionNode",
    "ExecutionPayload",
    "OutputMapping",
    "PayloadError",
    "decode_payload",
    "convert_payload",
]


# ``gc=False``: the collector does not track these (they never take part in a reference cycle:
# nothing stores a payload inside its own values). A 1000-node workflow decodes in half the
# time, and its structs add nothing to the collector's passes while the run lasts.
class ExecutionNode(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    id: str
    full_type: str
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)
    config_values: dict[str, Any] = msgspec.field(default_factory=dict)
    bypassed: bool = False
    input_connection_orders: dict[str, list[str]] = msgspec.field(default_factory=dict)


class ExecutionEdge(msgspec.Struct, rename="camel", omit_defaults=True, gc=False):
    source_node_id: str
    target_node_id: str
    source_handle: str | None = ""
    target_handle: str | None = ""
    id: str | None = None


class OutputMapping(msgspec.Struct, rename="camel", gc=False):
    source_node_id: str
    source_slot_key: str


class ExecutionPayload(msgspec.Struct, rename="camel", omit_defaults=True):
    """What the editor sends to run a workflow (flattened or not)."""

    nodes: list[ExecutionNode]
    edges: list[ExecutionEdge] = msgspec.field(default_factory=list)
    interface_inputs: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    interface_outputs: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    output_interface_mappings: dict[str, OutputMapping] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    workflow_id: str | None = None
    client_id: str | None = None


class PayloadError(Exception):
    """The payload is not a valid ``WorkflowExecutionPayload``; ``details`` names the field."""

    def __init__(self, message: str, details: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def _normalise(payload: ExecutionPayload) -> ExecutionPayload:
    """Undo the editor's known quirks so the engine sees one shape.

    Preview runs copy the raw VueFlow input objects (``{"value": ..., "dataFlowType": ...}``)
    instead of plain values (frontend-contract A4.2); take their ``value``.
    """
    if payload.metadata.get("isPreviewRun"):
        for node in payload.nodes:
            for key, value in list(node.inputs.items()):
                if isinstance(value, dict) and "value" in value and "dataFlowType" in value:
                    node.inputs[key] = value["value"]
    return payload


def convert_payload(raw: Any) -> ExecutionPayload:
    """Validate an already-parsed JSON value (the WebSocket path)."""
    if not isinstance(raw, dict):
        raise PayloadError(
            "invalid execution payload", [{"path": "$", "message": f"Expected `object`, got `{type(raw).__name__}`"}]
        )
    try:
        return _normalise(msgspec.convert(raw, ExecutionPayload))
    except msgspec.ValidationError as exc:
        raise PayloadError("invalid execution payload", validation_details(exc)) from None


def decode_valid_payload(data: bytes | str | Any, *, nesting_checked: bool = False) -> ExecutionPayload | None:
    """Decode valid JSON straight into an ``ExecutionPayload`` (one pass, no intermediate dicts
    for a big workflow), after the nesting check; ``None`` when it is not a valid payload (the
    two-pass path then answers with its exact error). ``nesting_checked``: the caller already
    checked the text this is part of."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if not nesting_checked and _nesting_exceeds(raw, MAX_JSON_DEPTH):
        return None
    try:
        return _normalise(_payload_decoder.decode(raw))
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


_payload_decoder = msgspec.json.Decoder(ExecutionPayload)


def decode_payload(data: bytes | str) -> ExecutionPayload:
    """Decode and validate raw JSON (the HTTP path); too deep nesting counts as malformed."""
    fast = decode_valid_payload(data)
    if fast is not None:
        return fast
    try:
        raw = decode_json(data)
    except JsonTooDeep as exc:
        raise PayloadError("malformed JSON", [{"path": "$", "message": str(exc)}]) from None
    except msgspec.DecodeError as exc:
        raise PayloadError("malformed JSON", validation_details(exc)) from None
    return convert_payload(raw)
