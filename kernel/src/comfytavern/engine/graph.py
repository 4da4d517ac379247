"""Validation and one-time preparation of a payload into an index-based graph.

Everything that does not depend on run-time values is computed here once: node kinds, input
plans (which edge feeds which key, in which order), static values (preset, else definition
default), dependency counts and the stream edges. The executor then only does dictionary look-ups
per node. All walks are iterative, so deep chains cannot hit the recursion limit.
"""

from __future__ import annotations

import gc
import inspect
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from comfytavern.engine.issues import Issue, WorkflowInvalid
from comfytavern.engine.payload import ExecutionPayload
from comfytavern.nodes.definition import EMPTY_VALUES, Input, Node, Output
from comfytavern.nodes.registry import NodeRegistry
from comfytavern.storage.projects import GROUP_NODE_TYPE

__all__ = [
    "ASYNC",
    "ASYNC_GEN",
    "BYPASS",
    "BYPASS_STREAM",
    "SYNC",
    "SYNC_GEN",
    "GROUP_NODE_TYPE",
    "Limits",
    "PreparedGraph",
    "PNode",
    "compatible",
    "is_stream_output",
    "prepare",
]

SYNC, ASYNC, ASYNC_GEN, SYNC_GEN, BYPASS, BYPASS_STREAM = range(6)
GENERATOR_KINDS = frozenset({ASYNC_GEN, SYNC_GEN, BYPASS_STREAM})
_MULTI_HANDLE = re.compile(r"^(.*)__(\d+)$")
_MAX_ISSUES = 200


@dataclass(frozen=True)
class Limits:
    """Size limits that keep one huge payload from hurting the server."""

    max_nodes: int = 50_000
    max_edges: int = 200_000


@dataclass(slots=True, eq=False)
class PNode:
    """One node, ready to run: everything static about it is precomputed."""

    index: int
    id: str
    full_type: str
    node: Node
    fn: Any
    kind: int
    mode_id: str | None
    config_values: dict[str, Any]
    input_defs: Mapping[str, Input]
    output_defs: Mapping[str, Output]
    #: Preset value, else the definition default, for every input (connected ones too: a
    #: connected input whose source produced nothing falls back to it).
    static_inputs: dict[str, Any]
    #: ``(key, source index, source slot, stream edge index or -1)`` for single inputs.
    single: list[tuple[str, int, str, int]] = field(default_factory=list)
    #: ``(key, [(source index, source slot, stream edge index or -1), ...])`` in wire order.
    multi: list[tuple[str, list[tuple[int, str, int]]]] = field(default_factory=list)
    #: Connected required inputs that have no static fallback (checked after resolution).
    late_required: tuple[str, ...] = ()
    value_out: list[int] = field(default_factory=list)
    stream_out: list[int] = field(default_factory=list)
    stream_edges_out: list[int] = field(default_factory=list)
    stream_edges_in: list[int] = field(default_factory=list)
    n_in: int = 0
    stream_slots: tuple[str, ...] = ()
    pass_through: dict[str, str] = field(default_factory=dict)
    interface_stream_keys: list[str] = field(default_factory=list)

    @property
    def bypassed(self) -> bool:
        return self.kind in (BYPASS, BYPASS_STREAM)


@dataclass(slots=True)
class StreamEdge:
    index: int
    source: int
    slot: str
    target: int


@dataclass(eq=False)
class PreparedGraph:
    nodes: list[PNode]
    stream_edges: list[StreamEdge]
    #: interface output key -> (source index, slot, is stream)
    interface: dict[str, tuple[int, str, bool]]
    interface_inputs: dict[str, Any]
    interface_outputs: dict[str, Any]
    metadata: dict[str, Any]
    workflow_id: str | None
    roots: list[int]
    ids: dict[str, int]


def _kind_of(fn: Any) -> int:
    if inspect.isasyncgenfunction(fn):
        return ASYNC_GEN
    if inspect.iscoroutinefunction(fn):
        return ASYNC
    if inspect.isgeneratorfunction(fn):
        return SYNC_GEN
    return SYNC


def is_stream_output(slot: Output | Input | None) -> bool:
    return slot is not None and (slot.is_stream or slot.data_flow_type == "STREAM")


_LOOSE = frozenset({"WILDCARD", "CONVERTIBLE_ANY"})
_WIDENING = {("INTEGER", "FLOAT"), ("INTEGER", "STRING"), ("FLOAT", "STRING"), ("BOOLEAN", "STRING")}


def compatible(out: Output, inp: Input) -> bool:
    """Can ``out`` feed ``inp``? Wildcards, shared match categories, equal or widening types."""
    a, b = out.data_flow_type, inp.data_flow_type
    if a in _LOOSE or b in _LOOSE or out.allow_dynamic_type or inp.allow_dynamic_type:
        return True
    ca, cb = out.match_categories or (), inp.match_categories or ()
    if "BehaviorWildcard" in ca or "BehaviorWildcard" in cb:
        return True
    if ca and cb and set(ca) & set(cb):
        return True
    return a == b or (a, b) in _WIDENING


def _split_handle(handle: str, inputs: Mapping[str, Input]) -> tuple[str, bool]:
    """``text_inputs__0`` -> (``text_inputs``, True) when ``text_inputs`` is a multi input."""
    if handle in inputs:
        return handle, inputs[handle].multi
    m = _MULTI_HANDLE.match(handle)
    if m and m.group(1) in inputs and inputs[m.group(1)].multi:
        return m.group(1), True
    return handle, False


class _Issues:
    def __init__(self) -> None:
        self.items: list[Issue] = []

    def add(self, **kwargs: Any) -> None:
        if len(self.items) < _MAX_ISSUES:
            self.items.append(Issue(**kwargs))

    def raise_if_any(self) -> None:
        if self.items:
            raise WorkflowInvalid(self.items)


def prepare(payload: ExecutionPayload, registry: NodeRegistry, limits: Limits = Limits()) -> PreparedGraph:
    """Validate ``payload`` against ``registry`` and precompute the run plan.

    Raises :class:`WorkflowInvalid` listing every problem found (per node).
    """
    # Building a big graph allocates many small containers and nothing cyclic; without this,
    # CPython's collector rescans the growing heap over and over (quadratic on big graphs).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _prepare(payload, registry, limits)
    finally:
        if enabled:
            gc.enable()


def _prepare(payload: ExecutionPayload, registry: NodeRegistry, limits: Limits) -> PreparedGraph:
    issues = _Issues()
    if len(payload.nodes) > limits.max_nodes:
        issues.add(type="too_large", message=f"workflow has {len(payload.nodes)} nodes; the limit is {limits.max_nodes}")
    if len(payload.edges) > limits.max_edges:
        issues.add(type="too_large", message=f"workflow has {len(payload.edges)} edges; the limit is {limits.max_edges}")
    issues.raise_if_any()

    ids: dict[str, int] = {}
    nodes: list[PNode] = []
    # Per (type, mode): slots, kind and default values are the same for every instance.
    plans: dict[tuple[str, str | None, Any], tuple[Any, ...]] = {}
    for wire in payload.nodes:
        if wire.id in ids:
            issues.add(type="duplicate_node_id", node_id=wire.id, message=f"node id {wire.id!r} is used twice")
            continue
        node = registry.get(wire.full_type)
        if node is None:
            if wire.full_type == GROUP_NODE_TYPE:
                message = "node groups need metadata.projectId and a referencedWorkflowId to be expanded"
                issues.add(type="node_group_error", node_id=wire.id, message=message)
            else:
                issues.add(
                    type="unknown_node_type",
                    node_id=wire.id,
                    message=f"Node type {wire.full_type} not found or not executable.",
                )
            ids[wire.id] = -1
            continue
        definition = node.definition
        if definition.config_values or wire.config_values:
            config = dict(definition.config_values or {})
            config.update(wire.config_values)
        else:
            config = {}
        mode_key = config.get(definition.mode_config_key) if definition.modes and definition.mode_config_key else None
        plan_key = (wire.full_type, mode_key if isinstance(mode_key, str) else None, id(node))
        plan = plans.get(plan_key)
        if plan is None:
            mode_id, fn = node.execute_for(config)
            input_defs, output_defs = node.slots_for(mode_id)
            defaults = {k: slot.default for k, slot in input_defs.items() if slot.default is not None}
            mutable = tuple(k for k, v in defaults.items() if isinstance(v, (dict, list)))
            stream_slots = tuple(k for k, o in output_defs.items() if is_stream_output(o))
            plan = (mode_id, fn, input_defs, output_defs, defaults, mutable, stream_slots, _kind_of(fn))
            plans[plan_key] = plan
        mode_id, fn, input_defs, output_defs, defaults, mutable, stream_slots, fn_kind = plan
        if fn is None and not wire.bypassed:
            issues.add(
                type="not_executable",
                node_id=wire.id,
                message=f"Node {wire.full_type} ({wire.id}) has no execute function for mode {mode_id!r}.",
            )
        static = dict(defaults)
        for key in mutable:
            static[key] = _copy_default(static[key])
        if wire.inputs:
            for key, value in wire.inputs.items():
                if value is not None:
                    static[key] = value
        # Positional: a keyword call of a dataclass costs noticeably more, once per node.
        pnode = PNode(
            len(nodes), wire.id, wire.full_type, node, fn, BYPASS if wire.bypassed else fn_kind, mode_id, config,
            input_defs, output_defs, static,
        )
        pnode.stream_slots = stream_slots
        ids[wire.id] = pnode.index
        nodes.append(pnode)
    wires = {w.id: w for w in payload.nodes}

    # -- edges --------------------------------------------------------------------------------
    stream_edges: list[StreamEdge] = []
    single_sources: dict[tuple[int, str], list[str]] = {}
    multi_sources: dict[tuple[int, str], list[tuple[str, int, str, int]]] = {}
    connected: set[tuple[int, str]] = set()
    for pos, edge in enumerate(payload.edges):
        edge_id = edge.id or f"#{pos}"
        src_i = ids.get(edge.source_node_id)
        tgt_i = ids.get(edge.target_node_id)
        if src_i is None or tgt_i is None:
            missing = edge.source_node_id if src_i is None else edge.target_node_id
            issues.add(
                type="unknown_node",
                edge_id=edge_id,
                node_id=edge.target_node_id if src_i is None and tgt_i is not None else None,
                message=f"edge {edge_id} refers to node {missing!r}, which is not in the workflow",
            )
            continue
        if src_i < 0 or tgt_i < 0:
            continue  # the unknown type is already reported
        if src_i == tgt_i:
            issues.add(type="dependency_cycle", node_id=edge.source_node_id, edge_id=edge_id,
                       nodes=[edge.source_node_id],
                       message=f"Workflow contains a cycle involving nodes: {edge.source_node_id}")
            continue
        src, tgt = nodes[src_i], nodes[tgt_i]
        s_handle = edge.source_handle or ""
        t_handle = edge.target_handle or ""
        tgt.n_in += 1
        if not s_handle or not t_handle:
            src.value_out.append(tgt_i)  # ordering-only edge: no data flows
            continue
        out_slot = src.output_defs.get(s_handle)
        if out_slot is None and not src.node.definition.dynamic_slots:
            issues.add(
                type="unknown_output",
                node_id=src.id,
                edge_id=edge_id,
                output=s_handle,
                message=f"node {src.id} ({src.full_type}) has no output {s_handle!r}",
            )
            continue
        key, is_multi = _split_handle(t_handle, tgt.input_defs)
        in_slot = tgt.input_defs.get(key)
        if in_slot is None and not tgt.node.definition.dynamic_slots:
            issues.add(
                type="unknown_input",
                node_id=tgt.id,
                edge_id=edge_id,
                input=t_handle,
                message=f"node {tgt.id} ({tgt.full_type}) has no input {t_handle!r}",
            )
            continue
        if out_slot is not None and in_slot is not None and not compatible(out_slot, in_slot):
            issues.add(
                type="incompatible_connection",
                node_id=tgt.id,
                edge_id=edge_id,
                input=key,
                output=s_handle,
                message=(
                    f"output {s_handle!r} of {src.id} ({out_slot.data_flow_type}) cannot feed input "
                    f"{key!r} of {tgt.id} ({in_slot.data_flow_type})"
                ),
            )
            continue
        stream_idx = -1
        if src.kind in GENERATOR_KINDS or (src.kind == BYPASS and out_slot is not None and is_stream_output(out_slot)):
            if s_handle in src.stream_slots:
                stream_idx = len(stream_edges)
                stream_edges.append(StreamEdge(stream_idx, src_i, s_handle, tgt_i))
        if stream_idx >= 0:
            src.stream_out.append(tgt_i)
            src.stream_edges_out.append(stream_idx)
            tgt.stream_edges_in.append(stream_idx)
        else:
            src.value_out.append(tgt_i)
        connected.add((tgt_i, key))
        if is_multi:
            multi_sources.setdefault((tgt_i, key), []).append((edge_id, src_i, s_handle, stream_idx))
        else:
            single_sources.setdefault((tgt_i, key), []).append(edge_id)
            tgt.single.append((key, src_i, s_handle, stream_idx))

    for (tgt_i, key), edge_ids in single_sources.items():
        if len(edge_ids) > 1:
            tgt = nodes[tgt_i]
            issues.add(
                type="too_many_connections",
                node_id=tgt.id,
                input=key,
                message=f"input {key!r} of node {tgt.id} has {len(edge_ids)} connections ({', '.join(edge_ids)}); it accepts one",
            )
    for (tgt_i, key), sources in multi_sources.items():
        tgt = nodes[tgt_i]
        order = wires[tgt.id].input_connection_orders.get(key) or []
        rank = {edge_id: n for n, edge_id in enumerate(order)}
        ordered = sorted(enumerate(sources), key=lambda item: (rank.get(item[1][0], len(rank) + item[0])))
        tgt.multi.append((key, [(s, slot, sidx) for _, (_, s, slot, sidx) in ordered]))

    # -- required inputs ----------------------------------------------------------------------
    for pnode in nodes:
        if pnode.bypassed:
            continue
        late: list[str] = []
        for key, slot in pnode.input_defs.items():
            if not slot.required:
                continue
            has_static = pnode.static_inputs.get(key) is not None
            if (pnode.index, key) in connected:
                if not has_static:
                    late.append(key)
            elif not has_static:
                issues.add(
                    type="missing_required_input",
                    node_id=pnode.id,
                    input=key,
                    message=f"Missing required input '{key}' for node {pnode.id} ({pnode.full_type})",
                )
        pnode.late_required = tuple(late)

    # -- interface outputs --------------------------------------------------------------------
    interface: dict[str, tuple[int, str, bool]] = {}
    for key, mapping in payload.output_interface_mappings.items():
        src_i = ids.get(mapping.source_node_id)
        if src_i is None:
            issues.add(
                type="unknown_interface_output",
                message=f"outputInterfaceMappings.{key} refers to node {mapping.source_node_id!r}, which is not in the workflow",
            )
            continue
        if src_i < 0:
            continue
        src = nodes[src_i]
        slot_key = mapping.source_slot_key
        if slot_key not in src.output_defs and not src.node.definition.dynamic_slots:
            issues.add(
                type="unknown_interface_output",
                node_id=src.id,
                output=slot_key,
                message=f"outputInterfaceMappings.{key}: node {src.id} has no output {slot_key!r}",
            )
            continue
        streamed = (src.kind in GENERATOR_KINDS or src.kind == BYPASS) and slot_key in src.stream_slots
        interface[key] = (src_i, slot_key, streamed)
        if streamed:
            src.interface_stream_keys.append(key)

    # -- bypass plans ------------------------------------------------------------------------
    for pnode in nodes:
        if pnode.kind == BYPASS:
            pnode.pass_through = _bypass_plan(pnode)
            if pnode.stream_edges_out or pnode.interface_stream_keys:
                pnode.kind = BYPASS_STREAM

    issues.raise_if_any()
    _check_cycles(nodes, issues)
    issues.raise_if_any()
    roots = [p.index for p in nodes if p.n_in == 0]
    return PreparedGraph(
        nodes=nodes,
        stream_edges=stream_edges,
        interface=interface,
        interface_inputs=payload.interface_inputs,
        interface_outputs=payload.interface_outputs,
        metadata=payload.metadata,
        workflow_id=payload.workflow_id or payload.metadata.get("workflowId"),
        roots=roots,
        ids={k: v for k, v in ids.items() if v >= 0},
    )


def _copy_default(value: Any) -> Any:
    """Mutable defaults (``{}``, ``[]``) must not be shared between runs or nodes."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def _bypass_plan(pnode: PNode) -> dict[str, str]:
    """Output -> input pass-through for a bypassed node (section 5.6 of the reference).

    ``{"passThrough": ...}`` is used when the definition has it (compatible pairs only); without a
    behaviour, each output takes the first not-yet-used compatible input; ``"mute"`` passes nothing.
    """
    behaviour = pnode.node.definition.bypass_behavior
    if behaviour == "mute":
        return {}
    plan: dict[str, str] = {}
    if behaviour is not None and not isinstance(behaviour, str):
        for out_key, in_key in (behaviour.pass_through or {}).items():
            out, inp = pnode.output_defs.get(out_key), pnode.input_defs.get(in_key)
            if out is not None and inp is not None and _bypass_compatible(inp, out):
                plan[out_key] = in_key
        return plan
    used: set[str] = set()
    for out_key, out in pnode.output_defs.items():
        for in_key, inp in pnode.input_defs.items():
            if in_key in used:
                continue
            if _bypass_compatible(inp, out):
                plan[out_key] = in_key
                used.add(in_key)
                break
    return plan


def _bypass_compatible(inp: Input, out: Output) -> bool:
    if is_stream_output(inp) != is_stream_output(out):
        return False
    fake_out = Output(data_flow_type=inp.data_flow_type, match_categories=inp.match_categories)
    fake_in = Input(data_flow_type=out.data_flow_type, match_categories=out.match_categories)
    return compatible(fake_out, fake_in)


def bypass_outputs(pnode: PNode, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Pseudo outputs of a bypassed node from its resolved inputs."""
    behaviour = pnode.node.definition.bypass_behavior
    defaults = {} if behaviour is None or isinstance(behaviour, str) else dict(behaviour.defaults or {})
    out: dict[str, Any] = {}
    for key, slot in pnode.output_defs.items():
        in_key = pnode.pass_through.get(key)
        value = inputs.get(in_key) if in_key is not None else None
        if value is None:
            if behaviour == "mute":
                value = None
            elif key in defaults:
                value = defaults[key]
            else:
                value = _copy_default(EMPTY_VALUES.get(slot.data_flow_type))
        out[key] = value
    return out


def _check_cycles(nodes: list[PNode], issues: _Issues) -> None:
    """Kahn's algorithm; on failure, trim nodes that merely sit downstream of a cycle."""
    indegree = [p.n_in for p in nodes]
    queue = deque(i for i, d in enumerate(indegree) if d == 0)
    seen = 0
    while queue:
        i = queue.popleft()
        seen += 1
        p = nodes[i]
        for t in p.value_out:
            indegree[t] -= 1
            if indegree[t] == 0:
                queue.append(t)
        for t in p.stream_out:
            indegree[t] -= 1
            if indegree[t] == 0:
                queue.append(t)
    if seen == len(nodes):
        return
    remaining = {i for i, d in enumerate(indegree) if d > 0}
    # Drop nodes with no successor inside the remaining set until only cycles are left.
    out_deg = {i: sum(1 for t in (*nodes[i].value_out, *nodes[i].stream_out) if t in remaining) for i in remaining}
    preds: dict[int, list[int]] = {i: [] for i in remaining}
    for i in remaining:
        for t in (*nodes[i].value_out, *nodes[i].stream_out):
            if t in remaining:
                preds[t].append(i)
    sinks = deque(i for i, d in out_deg.items() if d == 0)
    while sinks:
        i = sinks.popleft()
        remaining.discard(i)
        for s in preds[i]:
            if s in remaining:
                out_deg[s] -= 1
                if out_deg[s] == 0:
                    sinks.append(s)
    cyclic = [nodes[i].id for i in sorted(remaining)]
    message = f"Workflow contains a cycle involving nodes: {', '.join(cyclic[:50])}" + (" ..." if len(cyclic) > 50 else "")
    for node_id in cyclic:
        issues.add(type="dependency_cycle", node_id=node_id, nodes=cyclic, message=message)
