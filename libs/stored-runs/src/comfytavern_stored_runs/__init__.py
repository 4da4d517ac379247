"""A stored workflow as a function: its interface inputs in, an execution payload out.

The editor turns a saved workflow into an execution payload in the browser (frontend contract
A5); a program that runs a workflow *by reference* needs the same transform on the server:

- nodes and edges in the storage shape (``type``, ``inputValues``, ``source``...) become the
  payload shape; the top-level ``core:GroupInput``/``core:GroupOutput`` stay and run, as the
  editor sends them; ``core:NodeGroup`` nodes stay too and are expanded by the scheduler;
- each given input value travels as ``interfaceInputs[key].config.default`` (what
  ``core:GroupInput`` outputs); inputs not given keep the workflow's own default;
- ``outputInterfaceMappings`` come from the edges into the top-level GroupOutput, one per
  interface output key (``targetHandle == key``).

The given inputs are checked first: a key the interface does not have, a required input with no
value and no default, and a value of the wrong JSON type for a typed slot are reported together
(:class:`InterfaceInputError`), so nothing is queued for a call that cannot be right. A ``null``
value counts as not given.

The library ``comfytavern-stored-runs`` (``libs/stored-runs``), which the executions plugin
(``POST /api/workflows/.../run``) and the openai-api plugin depend on; the node-group expansion it
builds on (:func:`comfytavern.engine.groups.stored_to_payload`) is the kernel's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from comfytavern.engine.groups import GROUP_OUTPUT_TYPE, stored_to_payload
from comfytavern.engine.payload import ExecutionPayload, OutputMapping

__all__ = [
    "InterfaceInputError",
    "check_inputs",
    "interface_slots",
    "slot_is_stream",
    "stored_run_payload",
]


class InterfaceInputError(Exception):
    """The given inputs do not fit the workflow's interface.

    ``details`` has one ``{"path": "$.inputs.<key>", "key", "problem", "message"}`` per problem;
    ``problem`` is ``unknown``, ``missing`` or ``invalid``.
    """

    def __init__(self, details: list[dict[str, str]]) -> None:
        self.details = details
        self.message = "; ".join(d["message"] for d in details)
        super().__init__(self.message)


def interface_slots(doc: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``(interfaceInputs, interfaceOutputs)`` of a stored workflow, malformed slots left out."""

    def slots(field: str) -> dict[str, dict[str, Any]]:
        value = doc.get(field)
        if not isinstance(value, Mapping):
            return {}
        return {str(k): dict(v) for k, v in value.items() if isinstance(v, Mapping)}

    return slots("interfaceInputs"), slots("interfaceOutputs")


def slot_is_stream(slot: Mapping[str, Any]) -> bool:
    """A stream slot in either editor dialect (``isStream`` or ``dataFlowType: "STREAM"``)."""
    return slot.get("isStream") is True or slot.get("dataFlowType") == "STREAM"


def _default(slot: Mapping[str, Any]) -> tuple[bool, Any]:
    config = slot.get("config")
    if isinstance(config, Mapping) and "default" in config and config["default"] is not None:
        return True, config["default"]
    return False, None


def _type_problem(value: Any, slot: Mapping[str, Any]) -> str | None:
    """Why ``value`` cannot feed a slot of this ``dataFlowType`` (``None`` when it can).

    Only the plain JSON types are checked; loose slots (``WILDCARD``, ``CONVERTIBLE_ANY``...)
    take anything, and ranges are the receiving node's business.
    """
    kind = slot.get("dataFlowType")
    if kind == "STRING":
        ok = isinstance(value, str)
    elif kind == "INTEGER":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
    elif kind == "FLOAT":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "BOOLEAN":
        ok = isinstance(value, bool)
    elif kind == "OBJECT":
        ok = isinstance(value, dict)
    elif kind == "ARRAY":
        ok = isinstance(value, list)
    else:
        return None
    if ok:
        return None
    return f"expected {kind}, got {_json_type(value)}"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def check_inputs(doc: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The given values that will be used (``null`` dropped, whole floats for INTEGER slots made
    ``int``), or :class:`InterfaceInputError` listing every problem."""
    slots, _ = interface_slots(doc)
    problems: list[dict[str, str]] = []
    values: dict[str, Any] = {}
    known = ", ".join(sorted(slots)) or "none"
    for key, value in inputs.items():
        slot = slots.get(key)
        if slot is None:
            problems.append(_problem(key, "unknown", f"unknown interface input {key!r} (the workflow has: {known})"))
            continue
        if value is None:
            continue
        why = _type_problem(value, slot)
        if why is not None:
            problems.append(_problem(key, "invalid", f"interface input {key!r}: {why}"))
            continue
        if slot.get("dataFlowType") == "INTEGER" and isinstance(value, float):
            value = int(value)
        values[key] = value
    for key, slot in slots.items():
        if slot.get("required") is True and key not in values and not _default(slot)[0]:
            if not any(p["key"] == key for p in problems):
                problems.append(_problem(key, "missing", f"interface input {key!r} is required and has no default"))
    if problems:
        raise InterfaceInputError(problems)
    return values


def _problem(key: str, problem: str, message: str) -> dict[str, str]:
    return {"path": f"$.inputs.{key}", "key": key, "problem": problem, "message": message}


def stored_run_payload(
    doc: Mapping[str, Any],
    *,
    project_id: str,
    workflow_id: str,
    inputs: Mapping[str, Any],
) -> ExecutionPayload:
    """The execution payload that runs the stored workflow ``doc`` with ``inputs``.

    Raises :class:`InterfaceInputError` for inputs that do not fit, and
    :class:`~comfytavern.engine.issues.WorkflowInvalid` for a document whose nodes or edges are
    malformed (the graph itself is validated when the run is submitted).
    """
    values = check_inputs(doc, inputs)
    slots_in, slots_out = interface_slots(doc)
    clean = {**doc, "interfaceInputs": slots_in, "interfaceOutputs": slots_out}
    base = stored_to_payload(clean, None, workflow_id)  # type: ignore[arg-type]
    interface_inputs: dict[str, dict[str, Any]] = {}
    for key, slot in base.interface_inputs.items():
        slot = copy.deepcopy(slot)
        if key in values:
            config = slot.get("config")
            slot["config"] = {**(config if isinstance(config, Mapping) else {}), "default": values[key]}
        interface_inputs[key] = slot

    outputs_node_ids = {n.id for n in base.nodes if n.full_type == GROUP_OUTPUT_TYPE}
    mappings: dict[str, OutputMapping] = {}
    for edge in base.edges:
        key = edge.target_handle or ""
        if edge.target_node_id in outputs_node_ids and key in base.interface_outputs and key not in mappings:
            mappings[key] = OutputMapping(source_node_id=edge.source_node_id, source_slot_key=edge.source_handle or "")

    name = doc.get("name")
    metadata: dict[str, Any] = {"workflowId": workflow_id, "projectId": project_id}
    if isinstance(name, str):
        metadata["workflowName"] = name
    return ExecutionPayload(
        nodes=base.nodes,
        edges=base.edges,
        interface_inputs=interface_inputs,
        interface_outputs=base.interface_outputs,
        output_interface_mappings=mappings,
        metadata=metadata,
        workflow_id=workflow_id,
    )
