"""The graph engine: payload decoding, validation, execution and scheduling.

Start here: :class:`Scheduler` (the ``SCHEDULER`` service) accepts an
:class:`ExecutionPayload` from a :class:`~comfytavern.auth.Principal` and runs it.
"""

from comfytavern.engine.encoding import safe_encoder, to_jsonable
from comfytavern.engine.executor import INTERFACE_OUTPUTS_NODE_ID, Execution, ExecutionSettings
from comfytavern.engine.graph import Limits, PreparedGraph, prepare
from comfytavern.engine.groups import expand_groups
from comfytavern.engine.issues import Issue, WorkflowInvalid
from comfytavern.engine.payload import (
    ExecutionEdge,
    ExecutionNode,
    ExecutionPayload,
    OutputMapping,
    PayloadError,
    convert_payload,
    decode_payload,
)
from comfytavern.engine.scheduler import ActiveRun, Scheduler, SchedulerClosed, replay_record
from comfytavern.engine.threads import NodeThreads

__all__ = [
    "INTERFACE_OUTPUTS_NODE_ID",
    "ActiveRun",
    "Execution",
    "ExecutionEdge",
    "ExecutionNode",
    "ExecutionPayload",
    "ExecutionSettings",
    "Issue",
    "Limits",
    "NodeThreads",
    "OutputMapping",
    "PayloadError",
    "PreparedGraph",
    "Scheduler",
    "SchedulerClosed",
    "WorkflowInvalid",
    "convert_payload",
    "decode_payload",
    "expand_groups",
    "prepare",
    "replay_record",
    "safe_encoder",
    "to_jsonable",
]
