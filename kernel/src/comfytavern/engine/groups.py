"""Server-side expansion of ``core:NodeGroup`` nodes (a node that runs another stored workflow).

The editor flattens groups itself before a run, but API clients may submit or run unflattened
workflows. The rules follow the editor's flattener, with one fix: inner node and edge ids are
prefixed with ``<groupNodeId>/`` so a group used twice does not collide.

- inner ``core:GroupInput``/``core:GroupOutput`` nodes are dropped;
- an edge into group slot ``k`` is rewired to every inner node fed by the inner GroupInput's ``k``
  (new edge id ``<outerEdgeId>_flat_<innerNodeId>``); without such an edge the group instance's own
  input value (else the interface input's default) becomes the inner node's preset value;
- an edge out of group slot ``k`` is rewired from the inner node feeding the inner GroupOutput's
  ``k``; interface output mappings that name the group are rewired the same way;
- nested groups are expanded first; a reference cycle or a missing workflow is an error.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import msgspec

from comfytavern.engine.graph import GROUP_NODE_TYPE
from comfytavern.engine.issues import Issue, WorkflowInvalid
from comfytavern.engine.payload import ExecutionEdge, ExecutionNode, ExecutionPayload, OutputMapping

__all__ = ["GROUP_INPUT_TYPE", "GROUP_OUTPUT_TYPE", "WorkflowSource", "expand_groups", "has_groups", "stored_to_payload"]

GROUP_INPUT_TYPE = "core:GroupInput"
GROUP_OUTPUT_TYPE = "core:GroupOutput"
MAX_DEPTH = 16
_MULTI_HANDLE = re.compile(r"^(.*)__(\d+)$")


class WorkflowSource(Protocol):
    """The part of the projects store the expansion needs."""

    async def get_workflow(self, user_id: str, project_id: str, workflow_id: str) -> dict[str, Any] | None: ...


def has_groups(payload: ExecutionPayload) -> bool:
    return any(n.full_type == GROUP_NODE_TYPE for n in payload.nodes)


def _error(node_id: str | None, message: str) -> WorkflowInvalid:
    return WorkflowInvalid([Issue(type="node_group_error", node_id=node_id, message=message)])


def stored_to_payload(workflow: dict[str, Any], node_id: str, workflow_id: str) -> ExecutionPayload:
    """A stored WorkflowObject (``type``/``inputValues``/``source``...) as an execution payload."""
    try:
        nodes = [
            ExecutionNode(
                id=str(n["id"]),
                full_type=str(n["type"]),
                inputs=dict(n.get("inputValues") or {}),
                config_values=dict(n.get("configValues") or {}),
                input_connection_orders={k: list(v) for k, v in (n.get("inputConnectionOrders") or {}).items()},
                bypassed=bool(n.get("bypassed", False)),
            )
            for n in workflow.get("nodes") or []
        ]
        edges = [
            ExecutionEdge(
                id=str(e.get("id") or f"e{pos}"),
                source_node_id=str(e["source"]),
                target_node_id=str(e["target"]),
                source_handle=e.get("sourceHandle") or "",
                target_handle=e.get("targetHandle") or "",
            )
            for pos, e in enumerate(workflow.get("edges") or [])
        ]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise _error(node_id, f"referenced workflow {workflow_id!r} is malformed: {exc}") from None
    return ExecutionPayload(
        nodes=nodes,
        edges=edges,
        interface_inputs=dict(workflow.get("interfaceInputs") or {}),
        interface_outputs=dict(workflow.get("interfaceOutputs") or {}),
    )


async def expand_groups(
    payload: ExecutionPayload,
    source: WorkflowSource | None,
    *,
    user_id: str,
    project_id: str | None,
    _stack: tuple[str, ...] = (),
) -> ExecutionPayload:
    """A copy of ``payload`` with every group node replaced by its (recursively expanded) workflow."""
    if not has_groups(payload):
        return payload
    if len(_stack) >= MAX_DEPTH:
        raise _error(None, f"node groups are nested more than {MAX_DEPTH} levels deep")
    nodes = list(payload.nodes)
    edges = list(payload.edges)
    mappings = dict(payload.output_interface_mappings)
    for group in [n for n in payload.nodes if n.full_type == GROUP_NODE_TYPE]:
        workflow_id = group.config_values.get("referencedWorkflowId")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise _error(group.id, f"node group {group.id} has no configValues.referencedWorkflowId")
        if workflow_id in _stack:
            chain = " -> ".join((*_stack, workflow_id))
            raise _error(group.id, f"node group reference cycle: {chain}")
        if source is None:
            raise _error(group.id, "node groups cannot be expanded: no projects storage is configured")
        if not project_id:
            raise _error(group.id, "node groups need metadata.projectId to find the referenced workflow")
        stored = await source.get_workflow(user_id, project_id, workflow_id)
        if stored is None:
            raise _error(group.id, f"node group {group.id} references workflow {workflow_id!r}, which does not exist")
        inner = stored_to_payload(stored, group.id, workflow_id)
        inner = await expand_groups(inner, source, user_id=user_id, project_id=project_id, _stack=(*_stack, workflow_id))
        nodes, edges, mappings = _splice(group, inner, nodes, edges, mappings)
    return msgspec.structs.replace(payload, nodes=nodes, edges=edges, output_interface_mappings=mappings)


def _base_key(handle: str) -> str:
    m = _MULTI_HANDLE.match(handle)
    return m.group(1) if m else handle


def _splice(
    group: ExecutionNode,
    inner: ExecutionPayload,
    nodes: list[ExecutionNode],
    edges: list[ExecutionEdge],
    mappings: dict[str, OutputMapping],
) -> tuple[list[ExecutionNode], list[ExecutionEdge], dict[str, OutputMapping]]:
    prefix = f"{group.id}/"
    io_types = {GROUP_INPUT_TYPE, GROUP_OUTPUT_TYPE}
    gi = {n.id for n in inner.nodes if n.full_type == GROUP_INPUT_TYPE}
    go = {n.id for n in inner.nodes if n.full_type == GROUP_OUTPUT_TYPE}
    renamed: dict[str, ExecutionNode] = {}
    for n in inner.nodes:
        if n.full_type in io_types:
            continue
        renamed[n.id] = ExecutionNode(
            id=prefix + n.id,
            full_type=n.full_type,
            inputs=dict(n.inputs),
            config_values=dict(n.config_values),
            bypassed=n.bypassed,
            input_connection_orders={k: [prefix + e for e in v] for k, v in n.input_connection_orders.items()},
        )
    entries: dict[str, list[tuple[ExecutionNode, str, str]]] = {}
    exits: dict[str, tuple[str, str]] = {}
    passthrough: dict[str, str] = {}
    new_edges: list[ExecutionEdge] = []
    for e in inner.edges:
        eid = prefix + (e.id or "")
        s_in, t_out = e.source_node_id in gi, e.target_node_id in go
        if s_in and t_out:
            passthrough[e.target_handle or ""] = e.source_handle or ""
        elif s_in:
            target = renamed.get(e.target_node_id)
            if target is not None:
                entries.setdefault(e.source_handle or "", []).append((target, e.target_handle or "", eid))
        elif t_out:
            if e.source_node_id in renamed:
                exits[e.target_handle or ""] = (prefix + e.source_node_id, e.source_handle or "")
        elif e.source_node_id in renamed and e.target_node_id in renamed:
            new_edges.append(
                ExecutionEdge(
                    id=eid,
                    source_node_id=prefix + e.source_node_id,
                    target_node_id=prefix + e.target_node_id,
                    source_handle=e.source_handle,
                    target_handle=e.target_handle,
                )
            )

    outer_in: dict[str, list[ExecutionEdge]] = {}
    outer_nodes = {n.id: n for n in nodes}
    kept: list[ExecutionEdge] = []
    outgoing: list[ExecutionEdge] = []
    for e in edges:
        if e.target_node_id == group.id:
            outer_in.setdefault(e.target_handle or "", []).append(e)
        elif e.source_node_id == group.id:
            outgoing.append(e)
        else:
            kept.append(e)

    def replace_order(node: ExecutionNode, old: str, new: str) -> None:
        for key, order in node.input_connection_orders.items():
            node.input_connection_orders[key] = [new if x == old else x for x in order]

    # Entries: edges into the group are rewired to the inner targets, or become presets.
    for slot, targets in entries.items():
        feeding = outer_in.get(slot, [])
        for target, handle, inner_eid in targets:
            if feeding:
                for outer in feeding:
                    new_id = f"{outer.id}_flat_{target.id}"
                    new_edges.append(
                        ExecutionEdge(
                            id=new_id,
                            source_node_id=outer.source_node_id,
                            target_node_id=target.id,
                            source_handle=outer.source_handle,
                            target_handle=handle,
                        )
                    )
                    replace_order(target, inner_eid, new_id)
            else:
                for key, order in target.input_connection_orders.items():
                    target.input_connection_orders[key] = [x for x in order if x != inner_eid]
                value = group.inputs.get(slot)
                if value is None:
                    value = ((inner.interface_inputs.get(slot) or {}).get("config") or {}).get("default")
                if value is not None:
                    target.inputs[_base_key(handle)] = value

    def group_output_source(slot: str) -> tuple[str, str] | None:
        if slot in exits:
            return exits[slot]
        if slot in passthrough:
            feeding = outer_in.get(passthrough[slot], [])
            if feeding:
                return feeding[0].source_node_id, feeding[0].source_handle or ""
        return None

    # Exits: edges out of the group come from the inner node feeding the inner GroupOutput.
    for e in outgoing:
        origin = group_output_source(e.source_handle or "")
        if origin is None:
            continue
        new_id = f"{e.id}_flat_{origin[0]}"
        new_edges.append(
            ExecutionEdge(
                id=new_id,
                source_node_id=origin[0],
                target_node_id=e.target_node_id,
                source_handle=origin[1],
                target_handle=e.target_handle,
            )
        )
        target = outer_nodes.get(e.target_node_id)
        if target is not None and e.id:
            replace_order(target, e.id, new_id)

    new_mappings: dict[str, OutputMapping] = {}
    for key, m in mappings.items():
        if m.source_node_id == group.id:
            origin = group_output_source(m.source_slot_key)
            if origin is not None:
                new_mappings[key] = OutputMapping(source_node_id=origin[0], source_slot_key=origin[1])
        else:
            new_mappings[key] = m

    out_nodes = [n for n in nodes if n.id != group.id] + list(renamed.values())
    return out_nodes, kept + new_edges, new_mappings
