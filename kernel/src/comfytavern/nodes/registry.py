"""Immutable node registry snapshots, swapped atomically on reload.

A run captures the snapshot it started with, so a reload never changes the code of a run in
flight. The JSON served by ``GET /api/nodes`` is encoded once per snapshot, with its ETag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import msgspec

from comfytavern.nodes.definition import Node

__all__ = ["NodeCollision", "NodeRegistry", "RegistryHolder"]


@dataclass(frozen=True)
class NodeCollision:
    """Two sources defined the same full type; the first one was kept."""

    full_type: str
    kept_source: str
    dropped_source: str

    def describe(self) -> str:
        return (
            f"node type {self.full_type!r} is defined by both {self.kept_source!r} and "
            f"{self.dropped_source!r}; keeping the one from {self.kept_source!r}"
        )


@dataclass(frozen=True, eq=False)
class NodeRegistry:
    """One immutable snapshot: ``full_type -> Node`` plus where each node came from."""

    nodes: Mapping[str, Node]
    sources: Mapping[str, str]
    collisions: tuple[NodeCollision, ...] = ()
    generation: int = 0
    _extra: dict[str, object] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls, contributions: Iterable[tuple[str, str, Iterable[Node]]], generation: int = 0
    ) -> NodeRegistry:
        """``contributions`` are ``(source name, default namespace, nodes)`` in priority order."""
        nodes: dict[str, Node] = {}
        sources: dict[str, str] = {}
        collisions: list[NodeCollision] = []
        for source, namespace, items in contributions:
            for item in items:
                if not isinstance(item, Node):
                    raise TypeError(
                        f"{source}: register_nodes returned {type(item).__name__}, "
                        "expected nodes made with comfytavern.node"
                    )
                if not item.definition.namespace:
                    item = item.with_namespace(namespace)
                full = item.full_type
                if full in nodes:
                    collisions.append(NodeCollision(full, sources[full], source))
                    continue
                nodes[full] = item
                sources[full] = source
        return cls(MappingProxyType(nodes), MappingProxyType(sources), tuple(collisions), generation)

    def get(self, full_type: str) -> Node | None:
        return self.nodes.get(full_type)

    def __contains__(self, full_type: object) -> bool:
        return full_type in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    @cached_property
    def definitions_json(self) -> bytes:
        """The ``GET /api/nodes`` body, encoded once for this snapshot."""
        return msgspec.json.encode([n.definition for n in self.nodes.values()])

    @cached_property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.definitions_json).hexdigest()[:32] + '"'


class RegistryHolder:
    """Holds the live snapshot; ``swap`` replaces it in one assignment."""

    def __init__(self, registry: NodeRegistry | None = None) -> None:
        self._current = registry or NodeRegistry(MappingProxyType({}), MappingProxyType({}))

    @property
    def current(self) -> NodeRegistry:
        return self._current

    def swap(self, registry: NodeRegistry) -> NodeRegistry:
        previous, self._current = self._current, registry
        return previous
