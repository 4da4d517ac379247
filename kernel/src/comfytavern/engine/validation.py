"""Input values checked against their node's definition before a run starts.

ComfyUI refuses a prompt whose widget values do not fit the node (a wrong type, a number out of
``min``/``max``, an option the combo does not offer) before anything executes; without this
check a run starts, earlier nodes spend time and money, and the bad node fails half-way. Here
every value a payload carries is checked once, for HTTP and WebSocket submissions alike (the
scheduler's ``prepare`` is their one path), and every problem becomes an :class:`InputIssue`
naming node, input, value and rule (HTTP 422; over the WebSocket the run is recorded as failed
with one ``NODE_ERROR`` per node and the issues in ``errorInfo``).

The rules (``docs/node-packs.md`` lists them for node authors):

- only values present in the payload are checked: ``null`` means "not set", the definition's
  default is the pack author's responsibility, and an input fed by an edge is not checked (the
  edge's value wins; the editor still sends e.g. ``[null]`` for a connected multi input);
- ``STREAM``, ``WILDCARD``, ``CONVERTIBLE_ANY``, ``BINARY``, stream slots and inputs with
  ``allow_dynamic_type`` accept any value;
- ``INTEGER``: a whole number; ``FLOAT``: a finite number. A string holding such a number is
  converted (older editors and API clients send numbers as strings); nothing else is coerced;
- ``BOOLEAN``: ``true``/``false``; ``STRING``: text; ``OBJECT``: an object, an array or text (the
  nodes parse JSON text); ``ARRAY``: an array or text;
- ``config.min`` / ``config.max`` bound ``INTEGER`` and ``FLOAT`` values (inclusive);
- an input with the ``ComboOption`` match category and ``config.suggestions`` accepts only the
  suggestions' values (plain suggestions on other inputs are hints, not limits);
- a ``multi`` input holding a list has each non-null item checked against the same rules;
- the same rules apply to ``configValues`` for the keys of the node's ``configSchema``;
- keys the definition does not declare are left alone, bypassed nodes are not checked, and
  missing required inputs are reported by :func:`comfytavern.engine.graph.prepare`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import msgspec

from comfytavern.engine.graph import Limits, PreparedGraph, prepare
from comfytavern.engine.issues import Issue, WorkflowInvalid
from comfytavern.engine.payload import ExecutionNode, ExecutionPayload
from comfytavern.nodes.definition import Input, Node
from comfytavern.nodes.registry import NodeRegistry

__all__ = ["InputIssue", "input_issues", "prepare_checked"]

#: Types whose inputs take any value (no type, range or option check).
UNCHECKED_TYPES = frozenset({"STREAM", "WILDCARD", "CONVERTIBLE_ANY", "BINARY"})
_MULTI_HANDLE = re.compile(r"^(.*)__(\d+)$")
_MAX_ISSUES = 200
#: Longest value echoed back in an issue (as its JSON text); longer values are summarised.
_MAX_ECHO = 200
_TYPE_WORDS = {
    "INTEGER": "a whole number",
    "FLOAT": "a number",
    "BOOLEAN": "true or false",
    "STRING": "text",
    "OBJECT": "a JSON object (or its text)",
    "ARRAY": "a JSON array (or its text)",
}


class InputIssue(Issue, kw_only=True):
    """An input value that does not fit its definition (``type`` = ``invalid_input_value``).

    ``rule`` is ``type``, ``min``, ``max`` or ``options``; ``expected`` is the data-flow type, the
    bound or the allowed values; ``value`` is the value received (summarised when long).
    """

    rule: str
    value: Any = None
    expected: Any = None


_DEFAULT_LIMITS = Limits()


def prepare_checked(payload: ExecutionPayload, registry: NodeRegistry, limits: Limits = _DEFAULT_LIMITS) -> PreparedGraph:
    """:func:`~comfytavern.engine.graph.prepare` plus the value checks; every problem in one error."""
    if len(payload.nodes) > limits.max_nodes or len(payload.edges) > limits.max_edges:
        return prepare(payload, registry, limits)  # refused for its size before anything else
    problems = input_issues(payload, registry)
    try:
        graph = prepare(payload, registry, limits)
    except WorkflowInvalid as exc:
        raise WorkflowInvalid([*exc.issues, *problems][:_MAX_ISSUES]) from None
    if problems:
        raise WorkflowInvalid(problems)
    return graph


def input_issues(payload: ExecutionPayload, registry: NodeRegistry) -> list[Issue]:
    """Every value problem of ``payload``; numeric strings of number inputs are converted in place."""
    connected = _connected_inputs(payload)
    issues: list[Issue] = []
    # Mode and slots per node type (when the node sets no config of its own): the same for
    # every instance, so a chain of one type looks them up once.
    plans: dict[str, tuple[str | None, Mapping[str, Input]]] = {}
    # ``(id(slot), type, value) -> result`` of values that passed: a chain of one node type
    # usually repeats the same preset values (a mode, a model name) on every node.
    passed: dict[tuple[int, type, Any], Any] = {}
    none: frozenset[str] = frozenset()
    for wire in payload.nodes:
        if wire.bypassed or (not wire.inputs and not wire.config_values):
            continue
        # The usual node: no settings of its own, a type seen before, values seen before.
        plan = plans.get(wire.full_type) if not wire.config_values else None
        if plan is not None and _all_passed(wire.inputs, plan[1], connected.get(wire.id, none), passed):
            continue
        node = registry.get(wire.full_type)
        if node is None:
            continue  # reported by prepare
        _check_node(wire, node, connected.get(wire.id, none), issues, plans, passed)
        if len(issues) >= _MAX_ISSUES:
            return issues[:_MAX_ISSUES]
    return issues


def _all_passed(
    inputs: dict[str, Any], input_defs: Mapping[str, Input], connected: AbstractSet[str], passed: dict[tuple[int, type, Any], Any]
) -> bool:
    """Did every checked value of ``inputs`` pass before (the memo of :func:`_check_node`)?
    Applies the remembered conversions; ``False`` leaves the rest to :func:`_check_node`."""
    for key, value in inputs.items():
        slot = input_defs.get(key)
        if slot is None or value is None or key in connected:
            continue
        kind = type(value)
        if kind not in _MEMO_TYPES:
            return False
        fixed = passed.get((id(slot), kind, value), _MISSING)
        if fixed is _MISSING:
            return False
        if fixed is not _UNCHANGED:
            inputs[key] = fixed
    return True


def _connected_inputs(payload: ExecutionPayload) -> dict[str, set[str]]:
    """Target handles per node id, multi sub-handles (``key__0``) also under their base key."""
    found: dict[str, set[str]] = {}
    for edge in payload.edges:
        handle = edge.target_handle
        if not handle or not edge.source_handle:
            continue  # an ordering-only edge carries no value
        keys = found.get(edge.target_node_id)
        if keys is None:
            keys = found[edge.target_node_id] = set()
        keys.add(handle)
        match = _MULTI_HANDLE.match(handle) if "__" in handle else None
        if match:
            keys.add(match.group(1))
    return found


def _check_node(
    wire: ExecutionNode,
    node: Node,
    connected: AbstractSet[str],
    issues: list[Issue],
    plans: dict[str, tuple[str | None, Mapping[str, Input]]] | None = None,
    passed: dict[tuple[int, type, Any], Any] | None = None,
) -> None:
    definition = node.definition
    plan = plans.get(wire.full_type) if plans is not None and not wire.config_values else None
    if plan is None:
        config = dict(definition.config_values or {})
        config.update(wire.config_values)
        mode_id, _ = node.execute_for(config)
        input_defs, _ = node.slots_for(mode_id)
        if plans is not None and not wire.config_values:
            plans[wire.full_type] = (mode_id, input_defs)
    else:
        mode_id, input_defs = plan
    for key, value in wire.inputs.items():
        slot = input_defs.get(key)
        if slot is None or value is None or key in connected:
            continue
        memo = (id(slot), type(value), value) if passed is not None and type(value) in _MEMO_TYPES else None
        if memo is not None:
            fixed = passed.get(memo, _MISSING)  # type: ignore[union-attr]
            if fixed is not _MISSING:
                if fixed is not _UNCHANGED:
                    wire.inputs[key] = fixed
                continue
        before = len(issues)
        fixed = _check_value(slot, value, f"node {wire.id} ({wire.full_type})", key, "input", wire.id, issues)
        if fixed is not _UNCHANGED:
            wire.inputs[key] = fixed
        if memo is not None and len(issues) == before:
            passed[memo] = fixed  # type: ignore[index]
    if not wire.config_values:
        return
    schema = dict(definition.config_schema or {})
    if mode_id and definition.modes and mode_id in definition.modes:
        schema.update(definition.modes[mode_id].config_schema or {})
    for key, value in wire.config_values.items():
        slot = schema.get(key)
        if slot is None or value is None:
            continue
        label = f"node {wire.id} ({wire.full_type})"
        fixed = _check_value(slot, value, label, key, "setting", wire.id, issues)
        if fixed is not _UNCHANGED:
            wire.config_values[key] = fixed


_UNCHANGED: Any = object()
_MISSING: Any = object()
#: Value types whose check result depends only on the slot and the value (hashable, immutable).
_MEMO_TYPES = frozenset({str, int, float, bool})


def _check_value(slot: Input, value: Any, label: str, key: str, what: str, node_id: str, issues: list[Issue]) -> Any:
    """Check one value; returns the converted value, or ``_UNCHANGED``."""
    if slot.data_flow_type in UNCHECKED_TYPES or slot.is_stream or slot.allow_dynamic_type:
        return _UNCHANGED
    if slot.multi and isinstance(value, list):
        items = list(value)
        changed = False
        for index, item in enumerate(items):
            if item is None:
                continue
            fixed = _check_one(slot, item, label, f"{key}[{index}]", key, what, node_id, issues)
            if fixed is not _UNCHANGED:
                items[index] = fixed
                changed = True
        return items if changed else _UNCHANGED
    return _check_one(slot, value, label, key, key, what, node_id, issues)


def _check_one(
    slot: Input, value: Any, label: str, shown: str, key: str, what: str, node_id: str, issues: list[Issue]
) -> Any:
    kind = slot.data_flow_type

    def fail(rule: str, expected: Any, reason: str) -> Any:
        issues.append(
            InputIssue(
                type="invalid_input_value",
                node_id=node_id,
                input=key,
                rule=rule,
                value=_echo(value),
                expected=expected,
                message=f"{label}: {what} {shown!r} = {_show(value)} {reason}",
            )
        )
        return _UNCHANGED

    converted = _UNCHANGED
    if kind in ("INTEGER", "FLOAT"):
        number = _number(value, whole=kind == "INTEGER")
        if number is None:
            return fail("type", kind, f"is not {_TYPE_WORDS[kind]}")
        if isinstance(value, str):
            converted = number
        config = slot.config or {}
        low, high = _bound(config.get("min")), _bound(config.get("max"))
        if low is not None and number < low:
            return fail("min", config["min"], f"is below the minimum {_show(config['min'])}")
        if high is not None and number > high:
            return fail("max", config["max"], f"is above the maximum {_show(config['max'])}")
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            return fail("type", kind, f"is not {_TYPE_WORDS[kind]}")
    elif kind == "STRING":
        if not isinstance(value, str):
            return fail("type", kind, f"is not {_TYPE_WORDS[kind]}")
    elif kind == "OBJECT":
        if not isinstance(value, (dict, list, str)):
            return fail("type", kind, f"is not {_TYPE_WORDS[kind]}")
    elif kind == "ARRAY":
        if not isinstance(value, (list, str)):
            return fail("type", kind, f"is not {_TYPE_WORDS[kind]}")
    options = _combo_options(slot)
    if options is not None:
        candidate = value if converted is _UNCHANGED else converted
        if not any(_same(candidate, option) for option in options):
            shown_options = options[:20]
            more = f" (and {len(options) - 20} more)" if len(options) > 20 else ""
            listed = ", ".join(_show(o) for o in shown_options)
            return fail("options", shown_options, f"is not one of the options: {listed}{more}")
    return converted


def _number(value: Any, *, whole: bool) -> int | float | None:
    """The number ``value`` holds (a number, or a string of one), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            number: int | float = int(text) if whole and _INT_TEXT.match(text) else float(text)
        except ValueError:
            return None
    elif isinstance(value, (int, float)):
        number = value
    else:
        return None
    if isinstance(number, float):
        if not math.isfinite(number):
            return None
        if whole:
            if not number.is_integer():
                return None
            number = int(number)
    return number


_INT_TEXT = re.compile(r"^[+-]?\d+$")


def _bound(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


#: ``id(slot) -> (slot, options)``: the options of a combo input, computed once per definition.
_OPTIONS: dict[int, tuple[Input, list[Any] | None]] = {}


def _combo_options(slot: Input) -> list[Any] | None:
    cached = _OPTIONS.get(id(slot))
    if cached is not None and cached[0] is slot:
        return cached[1]
    options = _compute_options(slot)
    if len(_OPTIONS) > 4096:
        _OPTIONS.clear()  # node reloads replace definitions; keep the cache small
    _OPTIONS[id(slot)] = (slot, options)
    return options


def _compute_options(slot: Input) -> list[Any] | None:
    if "ComboOption" not in (slot.match_categories or ()):
        return None
    suggestions = (slot.config or {}).get("suggestions")
    if not isinstance(suggestions, list) or not suggestions:
        return None
    return [s.get("value") if isinstance(s, Mapping) else s for s in suggestions]


def _same(value: Any, option: Any) -> bool:
    if isinstance(value, bool) or isinstance(option, bool):
        return value is option
    if isinstance(value, (int, float)) and isinstance(option, (int, float)):
        return value == option
    return type(value) is type(option) and value == option


def _echo(value: Any) -> Any:
    """The value itself when its JSON is short, else a short description (issues stay small)."""
    try:
        encoded = msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError):
        return f"<{type(value).__name__}>"
    if len(encoded) <= _MAX_ECHO:
        return value
    if isinstance(value, str):
        return value[:_MAX_ECHO] + "…"
    return f"<{type(value).__name__} of {len(encoded)} bytes>"


def _show(value: Any) -> str:
    echoed = _echo(value)
    if isinstance(echoed, str) and echoed.startswith("<") and not isinstance(value, str):
        return echoed
    try:
        return msgspec.json.encode(echoed).decode()
    except (TypeError, ValueError, OverflowError):
        return repr(echoed)
