"""Validation and one-time preparation of a payload into an index-based graph.

Everything that does not depend on run-time values is computed here once: node kinds, input
plans (which edge feeds which key, in which order), static values (preset, else definition
default), dependency counts and the stream edges. The executor then only does dictionary look-ups
per node. All walks are iterative, so deep chains cannot hit the recursion limit.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any, NamedTuple

from comfytavern.engine.bypass import bypass_outputs, bypass_plan, copy_default
from comfytavern.engine.cycles import cyclic_nodes
from comfytavern.engine.issues import Issue, WorkflowInvalid
from comfytavern.engine.payload import ExecutionPayload
from comfytavern.engine.plan import (
    ASYNC,
    ASYNC_GEN,
    BYPASS,
    BYPASS_STREAM,
    GENERATOR_KINDS,
    MULTI_HANDLE,
    SYNC,
    SYNC_GEN,
    Limits,
    PNode,
    PreparedGraph,
    StreamEdge,
    compatible,
    is_stream_output,
    kind_of,
)
from comfytavern.nodes.definition import Input, Node, Output
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
    "bypass_outputs",
    "compatible",
    "is_stream_output",
    "prepare",
]

_MAX_ISSUES = 200
_DEFAULT_LIMITS = Limits()


class _Issues:
    def __init__(self) -> None:
        self.items: list[Issue] = []

    def add(self, **kwargs: Any) -> None:
        if len(self.items) < _MAX_ISSUES:
            self.items.append(Issue(**kwargs))

    def raise_if_any(self) -> None:
        if self.items:
            raise WorkflowInvalid(self.items)


def prepare(payload: ExecutionPayload, registry: NodeRegistry, limits: Limits = _DEFAULT_LIMITS) -> PreparedGraph:
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


class _Plan(NamedTuple):
    """What every node of one type and mode shares (unpacked once per node)."""

    mode_id: str | None
    fn: Any
    input_defs: Mapping[str, Input]
    output_defs: Mapping[str, Output]
    defaults: dict[str, Any]
    mutable: tuple[str, ...]  # keys of mutable defaults (copied per node)
    stream_slots: tuple[str, ...]
    kind: int
    required: tuple[str, ...]


def _prepare(payload: ExecutionPayload, registry: NodeRegistry, limits: Limits) -> PreparedGraph:
    issues = _Issues()
    if len(payload.nodes) > limits.max_nodes:
        issues.add(type="too_large", message=f"workflow has {len(payload.nodes)} nodes; the limit is {limits.max_nodes}")
    if len(payload.edges) > limits.max_edges:
        issues.add(type="too_large", message=f"workflow has {len(payload.edges)} edges; the limit is {limits.max_edges}")
    issues.raise_if_any()

    nodes, ids, required = _plan_nodes(payload, registry, issues)
    stream_edges, multi_sources, crowded = _plan_edges(payload, nodes, ids, issues)
    if crowded:
        _report_crowded_inputs(payload, nodes, crowded, issues)
    if multi_sources:
        _order_multi_inputs(payload, nodes, multi_sources)
    _check_required_inputs(nodes, required, issues)
    interface = _plan_interface(payload, nodes, ids, issues)
    for pnode in nodes:
        if pnode.kind == BYPASS:
            pnode.pass_through = bypass_plan(pnode)
            if pnode.stream_edges_out or pnode.interface_stream_keys:
                pnode.kind = BYPASS_STREAM

    issues.raise_if_any()
    cyclic = cyclic_nodes(nodes)
    if cyclic:
        message = f"Workflow contains a cycle involving nodes: {', '.join(cyclic[:50])}" + (" ..." if len(cyclic) > 50 else "")
        for node_id in cyclic:
            issues.add(type="dependency_cycle", node_id=node_id, nodes=cyclic, message=message)
    issues.raise_if_any()
    return PreparedGraph(
        nodes=nodes,
        stream_edges=stream_edges,
        interface=interface,
        interface_inputs=payload.interface_inputs,
        interface_outputs=payload.interface_outputs,
        metadata=payload.metadata,
        workflow_id=payload.workflow_id or payload.metadata.get("workflowId"),
        roots=[p.index for p in nodes if p.n_in == 0],
        ids=ids,  # no unknown type (-1) is left: each one raised above
    )


def _plan_for(node: Node, config: dict[str, Any]) -> _Plan:
    mode_id, fn = node.execute_for(config)
    input_defs, output_defs = node.slots_for(mode_id)
    defaults = {k: slot.default for k, slot in input_defs.items() if slot.default is not None}
    mutable = tuple(k for k, v in defaults.items() if isinstance(v, (dict, list)))
    stream_slots = tuple(k for k, o in output_defs.items() if is_stream_output(o))
    required = tuple(k for k, slot in input_defs.items() if slot.required)
    return _Plan(mode_id, fn, input_defs, output_defs, defaults, mutable, stream_slots, kind_of(fn), required)


def _plan_nodes(payload: ExecutionPayload, registry: NodeRegistry, issues: _Issues) -> tuple[list[PNode], dict[str, int], list[tuple[str, ...]]]:
    """The nodes in payload order, their index by id (-1: unknown type) and, per node, its
    required input keys. The per-node loop of the whole preparation: keep it lean."""
    ids: dict[str, int] = {}
    nodes: list[PNode] = []
    required: list[tuple[str, ...]] = []
    plans: dict[tuple[int, str | None], _Plan] = {}
    get = registry.get
    for wire in payload.nodes:
        wire_id, full_type = wire.id, wire.full_type
        if wire_id in ids:
            issues.add(type="duplicate_node_id", node_id=wire_id, message=f"node id {wire_id!r} is used twice")
            continue
        node = get(full_type)
        if node is None:
            if full_type == GROUP_NODE_TYPE:
                message = "node groups need metadata.projectId and a referencedWorkflowId to be expanded"
                issues.add(type="node_group_error", node_id=wire_id, message=message)
            else:
                message = f"Node type {full_type} not found or not executable."
                issues.add(type="unknown_node_type", node_id=wire_id, message=message)
            ids[wire_id] = -1
            continue
        definition = node.definition
        if definition.config_values or wire.config_values:
            config = dict(definition.config_values or {})
            config.update(wire.config_values)
            mode_key = config.get(definition.mode_config_key) if definition.modes and definition.mode_config_key else None
            plan_key = (id(node), mode_key if isinstance(mode_key, str) else None)
        else:
            config = {}
            plan_key = (id(node), None)
        plan = plans.get(plan_key)
        if plan is None:
            plan = plans[plan_key] = _plan_for(node, config)
        mode_id, fn, input_defs, output_defs, defaults, mutable, stream_slots, fn_kind, needed = plan
        bypassed = wire.bypassed
        if fn is None and not bypassed:
            issues.add(
                type="not_executable",
                node_id=wire_id,
                message=f"Node {full_type} ({wire_id}) has no execute function for mode {mode_id!r}.",
            )
        static = defaults.copy()
        for key in mutable:
            static[key] = copy_default(static[key])
        if wire.inputs:
            for key, value in wire.inputs.items():
                if value is not None:
                    static[key] = value
        index = len(nodes)
        # Positional: a keyword call of a dataclass costs noticeably more, once per node.
        nodes.append(
            PNode(
                index,
                wire_id,
                full_type,
                node,
                fn,
                BYPASS if bypassed else fn_kind,
                mode_id,
                config,
                input_defs,
                output_defs,
                static,
                [],
                [],
                stream_slots,
            )
        )
        ids[wire_id] = index
        required.append(needed)
    return nodes, ids, required


def _plan_edges(
    payload: ExecutionPayload, nodes: list[PNode], ids: dict[str, int], issues: _Issues
) -> tuple[list[StreamEdge], dict[tuple[int, str], list[tuple[str, int, str, int]]], set[tuple[int, str]]]:
    """Wire the edges into the nodes; returns the stream edges, the sources of multi inputs (in
    edge order) and the single inputs that got more than one connection."""
    stream_edges: list[StreamEdge] = []
    multi_sources: dict[tuple[int, str], list[tuple[str, int, str, int]]] = {}
    crowded: set[tuple[int, str]] = set()
    # Slots are shared by every node of a type: a chain checks the same pair again and again.
    checked: dict[tuple[int, int], bool] = {}
    get_id = ids.get
    for pos, edge in enumerate(payload.edges):
        src_i = get_id(edge.source_node_id)
        tgt_i = get_id(edge.target_node_id)
        if src_i is None or tgt_i is None:
            edge_id = edge.id or f"#{pos}"
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
            issues.add(
                type="dependency_cycle",
                node_id=edge.source_node_id,
                edge_id=edge.id or f"#{pos}",
                nodes=[edge.source_node_id],
                message=f"Workflow contains a cycle involving nodes: {edge.source_node_id}",
            )
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
                edge_id=edge.id or f"#{pos}",
                output=s_handle,
                message=f"node {src.id} ({src.full_type}) has no output {s_handle!r}",
            )
            continue
        input_defs = tgt.input_defs
        in_slot = input_defs.get(t_handle)
        if in_slot is not None:
            key, is_multi = t_handle, in_slot.multi
        else:
            key, is_multi = _split_handle(t_handle, input_defs)
            in_slot = input_defs.get(key)
            if in_slot is None and not tgt.node.definition.dynamic_slots:
                issues.add(
                    type="unknown_input",
                    node_id=tgt.id,
                    edge_id=edge.id or f"#{pos}",
                    input=t_handle,
                    message=f"node {tgt.id} ({tgt.full_type}) has no input {t_handle!r}",
                )
                continue
        if out_slot is not None and in_slot is not None:
            pair = (id(out_slot), id(in_slot))
            fits = checked.get(pair)
            if fits is None:
                fits = checked[pair] = compatible(out_slot, in_slot)
            if not fits:
                issues.add(
                    type="incompatible_connection",
                    node_id=tgt.id,
                    edge_id=edge.id or f"#{pos}",
                    input=key,
                    output=s_handle,
                    message=(f"output {s_handle!r} of {src.id} ({out_slot.data_flow_type}) cannot feed input {key!r} of {tgt.id} ({in_slot.data_flow_type})"),
                )
                continue
        stream_idx = -1
        kind = src.kind
        if kind in GENERATOR_KINDS or (kind == BYPASS and out_slot is not None and is_stream_output(out_slot)):
            if s_handle in src.stream_slots:
                stream_idx = len(stream_edges)
                stream_edges.append(StreamEdge(stream_idx, src_i, s_handle, tgt_i))
        if stream_idx >= 0:
            _add_stream_edge(src, tgt, tgt_i, stream_idx)
        else:
            src.value_out.append(tgt_i)
        if is_multi:
            multi_sources.setdefault((tgt_i, key), []).append((edge.id or f"#{pos}", src_i, s_handle, stream_idx))
        else:
            single = tgt.single
            if single and any(entry[0] == key for entry in single):
                crowded.add((tgt_i, key))
            single.append((key, src_i, s_handle, stream_idx, pos))
    return stream_edges, multi_sources, crowded


def _split_handle(handle: str, inputs: Mapping[str, Input]) -> tuple[str, bool]:
    """``text_inputs__0`` -> (``text_inputs``, True) when ``text_inputs`` is a multi input."""
    if handle in inputs:
        return handle, inputs[handle].multi
    m = MULTI_HANDLE.match(handle)
    if m and m.group(1) in inputs and inputs[m.group(1)].multi:
        return m.group(1), True
    return handle, False


def _add_stream_edge(src: PNode, tgt: PNode, tgt_i: int, stream_idx: int) -> None:
    """Append to the stream lists, which start as the shared empty tuple (most nodes have none)."""
    if isinstance(src.stream_out, list):
        src.stream_out.append(tgt_i)
    else:
        src.stream_out = [tgt_i]
    if isinstance(src.stream_edges_out, list):
        src.stream_edges_out.append(stream_idx)
    else:
        src.stream_edges_out = [stream_idx]
    if isinstance(tgt.stream_edges_in, list):
        tgt.stream_edges_in.append(stream_idx)
    else:
        tgt.stream_edges_in = [stream_idx]


def _report_crowded_inputs(
    payload: ExecutionPayload, nodes: list[PNode], crowded: set[tuple[int, str]], issues: _Issues
) -> None:
    """One issue per single input with several connections, naming their edges in edge order;
    the inputs in the order of their first edge."""
    groups = []
    for tgt_i, key in crowded:
        positions = [entry[4] for entry in nodes[tgt_i].single if entry[0] == key]
        groups.append((positions[0], tgt_i, key, positions))
    edges = payload.edges
    for _, tgt_i, key, positions in sorted(groups, key=lambda group: group[0]):
        tgt = nodes[tgt_i]
        edge_ids = [edges[pos].id or f"#{pos}" for pos in positions]
        issues.add(
            type="too_many_connections",
            node_id=tgt.id,
            input=key,
            message=f"input {key!r} of node {tgt.id} has {len(edge_ids)} connections ({', '.join(edge_ids)}); it accepts one",
        )


def _order_multi_inputs(payload: ExecutionPayload, nodes: list[PNode], multi_sources: dict[tuple[int, str], list[tuple[str, int, str, int]]]) -> None:
    """Sources of each multi input in the wire's ``inputConnectionOrders``, else edge order."""
    wires = {w.id: w for w in payload.nodes}
    for (tgt_i, key), sources in multi_sources.items():
        tgt = nodes[tgt_i]
        order = wires[tgt.id].input_connection_orders.get(key) or []
        rank = {edge_id: n for n, edge_id in enumerate(order)}
        ordered = sorted(enumerate(sources), key=lambda item: rank.get(item[1][0], len(rank) + item[0]))
        entry = (key, [(s, slot, sidx) for _, (_, s, slot, sidx) in ordered])
        if isinstance(tgt.multi, list):
            tgt.multi.append(entry)
        else:
            tgt.multi = [entry]


def _check_required_inputs(nodes: list[PNode], required: list[tuple[str, ...]], issues: _Issues) -> None:
    """Unconnected required inputs without a value are errors; connected ones without a static
    fallback are checked again once their source ran (``late_required``)."""
    for pnode, needed in zip(nodes, required, strict=True):
        if not needed or pnode.kind == BYPASS or pnode.kind == BYPASS_STREAM:
            continue
        connected = {entry[0] for entry in pnode.single}
        connected.update(key for key, _ in pnode.multi)
        late: list[str] = []
        for key in needed:
            has_static = pnode.static_inputs.get(key) is not None
            if key in connected:
                if not has_static:
                    late.append(key)
            elif not has_static:
                issues.add(
                    type="missing_required_input",
                    node_id=pnode.id,
                    input=key,
                    message=f"Missing required input '{key}' for node {pnode.id} ({pnode.full_type})",
                )
        if late:
            pnode.late_required = tuple(late)


def _plan_interface(payload: ExecutionPayload, nodes: list[PNode], ids: dict[str, int], issues: _Issues) -> dict[str, tuple[int, str, bool]]:
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
            if isinstance(src.interface_stream_keys, list):
                src.interface_stream_keys.append(key)
            else:
                src.interface_stream_keys = [key]
    return interface
