"""Bypassed nodes: which input each output passes through, and the pseudo outputs at run time
(section 5.6 of the reference backend)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfytavern.engine.plan import PNode, compatible, is_stream_output
from comfytavern.nodes.definition import EMPTY_VALUES, Input, Output

__all__ = ["bypass_outputs", "bypass_plan", "copy_default"]


def copy_default(value: Any) -> Any:
    """Mutable defaults (``{}``, ``[]``) must not be shared between runs or nodes."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def bypass_plan(pnode: PNode) -> dict[str, str]:
    """Output -> input pass-through for a bypassed node.

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
    plan = pnode.pass_through or {}
    for key, slot in pnode.output_defs.items():
        in_key = plan.get(key)
        value = inputs.get(in_key) if in_key is not None else None
        if value is None:
            if behaviour == "mute":
                value = None
            elif key in defaults:
                value = defaults[key]
            else:
                value = copy_default(EMPTY_VALUES.get(slot.data_flow_type))
        out[key] = value
    return out
