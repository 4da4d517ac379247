"""The built-in node pack (namespace ``core``), organised by domain.

- :mod:`.group`: ``GroupInput``, ``GroupOutput``, ``NodeGroup``
- :mod:`.utilities`: ``TextMerge``, ``RandomNumber`` (with its client script)
- :mod:`.math_ops` and :mod:`.matrix`: ``MathOperation``, ``MatrixOperation``
- :mod:`.messages`: ``CreateMessage``, ``MergeMessages``
- :mod:`.streams`: ``StreamLogger``, ``StreamSuffixRelay``
- :mod:`.widgets`: ``TestWidgets``

Input/output keys, data-flow types, defaults and widget options match the original's, so
workflows saved by the original open and run unchanged.
"""

from __future__ import annotations

from comfytavern import Node, hookimpl
from comfytavern_nodes_core import group, math_ops, matrix, messages, streams, utilities, widgets

__all__ = ["NAMESPACE", "NODES", "register_nodes"]

NAMESPACE = "core"

NODES: tuple[Node, ...] = (
    *math_ops.NODES,
    *matrix.NODES,
    *messages.NODES,
    *utilities.NODES,
    *widgets.NODES,
    *streams.NODES,
    *group.NODES,
)


@hookimpl
def register_nodes() -> list[Node]:
    return list(NODES)
