"""The run plan :func:`~comfytavern.engine.graph.prepare` builds and the executor reads.

A prepared graph is index-based: nodes are :class:`PNode` records in payload order, edges are
lists of indices on them. Containers most nodes leave empty (stream edges, multi inputs,
interface streams) default to a shared empty tuple, so a big workflow
does not allocate (and the collector does not track) a handful of empty lists per node.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from comfytavern.nodes.definition import Input, Node, Output

__all__ = [
    "ASYNC",
    "ASYNC_GEN",
    "BYPASS",
    "BYPASS_STREAM",
    "GENERATOR_KINDS",
    "SYNC",
    "SYNC_GEN",
    "Limits",
    "PNode",
    "PreparedGraph",
    "StreamEdge",
    "compatible",
    "is_stream_output",
    "kind_of",
]

SYNC, ASYNC, ASYNC_GEN, SYNC_GEN, BYPASS, BYPASS_STREAM = range(6)
GENERATOR_KINDS = frozenset({ASYNC_GEN, SYNC_GEN, BYPASS_STREAM})
MULTI_HANDLE = re.compile(r"^(.*)__(\d+)$")


@dataclass(frozen=True)
class Limits:
    """Size limits that keep one huge payload from hurting the server."""

    max_nodes: int = 50_000
    max_edges: int = 200_000


class PNode(msgspec.Struct, gc=False):
    """One node, ready to run: everything static about it is precomputed.

    A Struct: built in C (a 1000-node run builds a thousand), and not tracked by the collector,
    which is safe because nothing it holds refers back to it.
    """

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
    #: ``(key, source index, source slot, stream edge index or -1, edge position in the payload)``
    #: for single inputs.
    single: list[tuple[str, int, str, int, int]]
    #: Targets of this node's value (and ordering-only) edges.
    value_out: list[int]
    #: Output keys that stream (the same for every node of a type and mode).
    stream_slots: tuple[str, ...] = ()
    #: ``(key, [(source index, source slot, stream edge index or -1), ...])`` in wire order.
    multi: Sequence[tuple[str, list[tuple[int, str, int]]]] = ()
    #: Connected required inputs that have no static fallback (checked after resolution).
    late_required: tuple[str, ...] = ()
    stream_out: Sequence[int] = ()
    stream_edges_out: Sequence[int] = ()
    stream_edges_in: Sequence[int] = ()
    n_in: int = 0
    #: Output -> input key of a bypassed node (``None``: not bypassed).
    pass_through: Mapping[str, str] | None = None
    interface_stream_keys: Sequence[str] = ()

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


def kind_of(fn: Any) -> int:
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
