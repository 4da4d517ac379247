"""Structured problems found before a run starts (one entry per node, edge or field)."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["Issue", "WorkflowInvalid"]


class Issue(msgspec.Struct, rename="camel", omit_defaults=True):
    """One validation problem. ``type`` is a stable machine-readable code:

    ``unknown_node_type``, ``not_executable``, ``duplicate_node_id``, ``unknown_node``,
    ``unknown_input``, ``unknown_output``, ``missing_required_input``, ``incompatible_connection``,
    ``too_many_connections``, ``dependency_cycle``, ``unknown_interface_output``,
    ``node_group_error``, ``too_large``.
    """

    type: str
    message: str
    node_id: str | None = None
    edge_id: str | None = None
    input: str | None = None
    output: str | None = None
    nodes: list[str] | None = None


class WorkflowInvalid(Exception):
    """The workflow cannot run; ``issues`` say exactly why, per node."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        unique = list(dict.fromkeys(issue.message for issue in issues)) or ["invalid workflow"]
        shown = "; ".join(unique[:3])
        more = f" (and {len(unique) - 3} more)" if len(unique) > 3 else ""
        super().__init__(f"Workflow validation failed: {shown}{more}")
        self.message = str(self)

    def details(self) -> dict[str, Any]:
        """``{"errors": [...], "nodeErrors": {nodeId: [...]}}`` for HTTP 422 and ``errorInfo``."""
        errors = msgspec.to_builtins(self.issues)
        by_node: dict[str, list[Any]] = {}
        for issue, raw in zip(self.issues, errors, strict=True):
            if issue.node_id is not None:
                by_node.setdefault(issue.node_id, []).append(raw)
        return {"errors": errors, "nodeErrors": by_node}
