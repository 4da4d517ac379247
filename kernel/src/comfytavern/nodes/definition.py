"""Node definitions: the wire format the editor reads, plus the Python callable that runs a node.

Field names follow Python style and are renamed to the editor's camelCase on the wire
(``data_flow_type`` -> ``dataFlowType``). Optional fields left at their defaults are omitted from
the JSON, as the editor expects (an absent key, never ``null``).
"""

from __future__ import annotations

import builtins
import inspect
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import msgspec

__all__ = [
    "DATA_FLOW_TYPES",
    "BypassSpec",
    "ExecuteFn",
    "Input",
    "InputAction",
    "Mode",
    "Node",
    "NodeDefinition",
    "NodeDefinitionError",
    "NodeModeDefinition",
    "Output",
    "Outputs",
    "node",
]

DATA_FLOW_TYPES = frozenset(
    {
        "STRING",
        "INTEGER",
        "FLOAT",
        "BOOLEAN",
        "OBJECT",
        "ARRAY",
        "BINARY",
        "STREAM",
        "WILDCARD",
        "CONVERTIBLE_ANY",
    }
)


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    pass


class InputAction(_Wire):
    id: str
    handler_type: Literal[
        "builtin_preview", "builtin_editor", "emit_event", "client_script_hook", "open_panel"
    ]
    icon: str | None = None
    label: str | None = None
    tooltip: str | None = None
    handler_args: dict[str, Any] | None = None


class Input(_Wire):
    """An input slot (or a ``configSchema`` entry). ``config`` holds widget options and ``default``."""

    data_flow_type: str
    display_name: str | None = None
    description: str | None = None
    required: bool = False
    multi: bool = False
    is_stream: bool = False
    match_categories: list[str] | None = None
    allow_dynamic_type: bool = False
    hide_handle: bool = False
    config: dict[str, Any] | None = None
    actions: list[InputAction] | None = None

    def __post_init__(self) -> None:
        if self.data_flow_type not in DATA_FLOW_TYPES:
            raise ValueError(
                f"unknown dataFlowType {self.data_flow_type!r}; expected one of "
                f"{', '.join(sorted(DATA_FLOW_TYPES))}"
            )
        _canonical_stream(self)

    @property
    def default(self) -> Any:
        """The effective default the editor assumes when it sends no value (see A5)."""
        if self.config:
            if "default" in self.config:
                return self.config["default"]
            suggestions = self.config.get("suggestions")
            if isinstance(suggestions, list) and suggestions:
                first = suggestions[0]
                return first.get("value") if isinstance(first, dict) else first
        return EMPTY_VALUES.get(self.data_flow_type)

    @property
    def has_default(self) -> bool:
        return bool(self.config) and ("default" in self.config)  # type: ignore[operator]


class Output(_Wire):
    data_flow_type: str
    display_name: str | None = None
    description: str | None = None
    is_stream: bool = False
    match_categories: list[str] | None = None
    allow_dynamic_type: bool = False
    hide_handle: bool = False

    def __post_init__(self) -> None:
        if self.data_flow_type not in DATA_FLOW_TYPES:
            raise ValueError(f"unknown dataFlowType {self.data_flow_type!r}")
        _canonical_stream(self)


def _canonical_stream(slot: Input | Output) -> None:
    """A seed-era ``STREAM`` slot is also flagged ``isStream`` (the canonical, later form); the
    seed dialect (the editor-dialect plugin) turns the flag back into ``STREAM`` on the wire."""
    if slot.data_flow_type == "STREAM":
        slot.is_stream = True


#: The value the editor treats as "empty" per type (and the bypass fallback).
EMPTY_VALUES: dict[str, Any] = {
    "STRING": "",
    "INTEGER": 0,
    "FLOAT": 0.0,
    "BOOLEAN": False,
    "OBJECT": {},
    "ARRAY": [],
}


def _always_sent() -> Any:
    """Factory for fields the editor requires even when empty (``inputs: {}``, ``description: ""``).

    ``omit_defaults`` drops a field equal to its default, but msgspec cannot compare a value with a
    custom factory's result, so a field built by a factory is always encoded.
    """
    return {}


def _empty_text() -> str:
    return ""


class BypassSpec(_Wire):
    pass_through: dict[str, str] | None = None
    defaults: dict[str, Any] | None = None


class NodeModeDefinition(_Wire):
    id: str
    display_name: str
    description: str | None = None
    inputs: dict[str, Input] = msgspec.field(default_factory=_always_sent)
    outputs: dict[str, Output] = msgspec.field(default_factory=_always_sent)
    config_schema: dict[str, Input] | None = None


class NodeDefinition(_Wire):
    """What ``GET /api/nodes`` returns for one node (never a server path, never a function)."""

    type: str
    namespace: str
    category: str
    display_name: str
    description: str = msgspec.field(default_factory=_empty_text)
    inputs: dict[str, Input] = msgspec.field(default_factory=_always_sent)
    outputs: dict[str, Output] = msgspec.field(default_factory=_always_sent)
    config_schema: dict[str, Input] | None = None
    config_values: dict[str, Any] | None = None
    bypass_behavior: Literal["mute"] | BypassSpec | None = None
    modes: dict[str, NodeModeDefinition] | None = None
    default_mode_id: str | None = None
    mode_config_key: str | None = None
    client_script_url: str | None = None
    width: int | None = None
    dynamic_slots: bool = False
    is_preview_unsafe: bool = False
    deprecated: bool = False
    experimental: bool = False

    @property
    def full_type(self) -> str:
        return f"{self.namespace}:{self.type}"


class Outputs(dict[str, Any]):
    """Yielded last by a streaming (async generator) node: its final output values.

    Python async generators cannot ``return`` a value, so a streaming node ends with
    ``yield Outputs(response=full_text)``. Everything yielded before it is a stream chunk.
    """


#: A node's execute callable: ``(inputs, ctx)`` returning outputs, an awaitable of them, or an
#: (async or sync) iterator of chunks ending with an :class:`Outputs`.
ExecuteFn: TypeAlias = Callable[
    [dict[str, Any], Any],
    "Mapping[str, Any] | None | Awaitable[Mapping[str, Any] | None] | AsyncIterator[Any] | Iterator[Any]",
]


@dataclass(frozen=True)
class Mode:
    """One mode of a multi-mode node; its own slots and, optionally, its own execute."""

    display_name: str
    inputs: Mapping[str, Input] = field(default_factory=dict)
    outputs: Mapping[str, Output] = field(default_factory=dict)
    description: str | None = None
    config_schema: Mapping[str, Input] | None = None
    execute: ExecuteFn | None = None


@dataclass(frozen=True)
class Node:
    """A registered node: its wire definition and the code that runs it.

    Create one with :func:`node`. ``source_dir`` is the folder ``client_script_url`` is relative to;
    it is never sent to the browser.
    """

    definition: NodeDefinition
    execute: ExecuteFn | None
    mode_executes: Mapping[str, ExecuteFn] = field(default_factory=dict)
    source_dir: Path | None = None

    @property
    def full_type(self) -> str:
        return self.definition.full_type

    def with_namespace(self, namespace: str) -> Node:
        definition = msgspec.structs.replace(self.definition, namespace=namespace)
        return Node(definition, self.execute, self.mode_executes, self.source_dir)

    def execute_for(self, config_values: Mapping[str, Any]) -> tuple[str | None, ExecuteFn | None]:
        """The mode id selected by ``config_values`` and the callable that runs it."""
        d = self.definition
        mode_id: str | None = None
        if d.modes:
            key = d.mode_config_key
            mode_id = config_values.get(key) if key else None
            if mode_id not in d.modes:
                mode_id = d.default_mode_id if d.default_mode_id in d.modes else next(iter(d.modes))
        if mode_id is not None and mode_id in self.mode_executes:
            return mode_id, self.mode_executes[mode_id]
        return mode_id, self.execute

    def slots_for(self, mode_id: str | None) -> tuple[Mapping[str, Input], Mapping[str, Output]]:
        """Effective inputs and outputs (a mode's, when it defines them)."""
        d = self.definition
        if mode_id and d.modes and mode_id in d.modes:
            mode = d.modes[mode_id]
            return (mode.inputs or d.inputs), (mode.outputs or d.outputs)
        return d.inputs, d.outputs


def _caller_dir(fn: Callable[..., Any] | None, depth: int = 2) -> Path | None:
    module_name = getattr(fn, "__module__", None) if fn is not None else None
    module = sys.modules.get(module_name) if module_name else None
    file = getattr(module, "__file__", None)
    if file is None:
        frame = inspect.stack()[depth]
        file = frame.filename
    return Path(file).resolve().parent if file else None


#: Marks an argument of :func:`node` the caller left out (so the error can name node and field).
_REQUIRED: Any = object()


class NodeDefinitionError(TypeError):
    """``@node(...)`` was called without a required field or with a wrong one; names node and field."""


def node(
    *,
    type: str = _REQUIRED,
    category: str = _REQUIRED,
    display_name: str = _REQUIRED,
    description: str = "",
    namespace: str | None = None,
    inputs: Mapping[str, Input] | None = None,
    outputs: Mapping[str, Output] | None = None,
    config_schema: Mapping[str, Input] | None = None,
    config_values: Mapping[str, Any] | None = None,
    bypass_behavior: Literal["mute"] | BypassSpec | None = None,
    modes: Mapping[str, Mode] | None = None,
    default_mode_id: str | None = None,
    mode_config_key: str | None = None,
    client_script_url: str | None = None,
    width: int | None = None,
    dynamic_slots: bool = False,
    is_preview_unsafe: bool = False,
    deprecated: bool = False,
    experimental: bool = False,
) -> Callable[[ExecuteFn | None], Node]:
    """Decorator turning an execute callable into a :class:`Node`.

    The namespace defaults to the pack's (set when the pack is loaded). ``client_script_url`` is
    resolved relative to the folder of the module that defines the node. ``type``, ``category``
    and ``display_name`` are required: leaving one out raises :class:`NodeDefinitionError` naming
    the node and the field (instead of Python's bare "missing keyword argument").
    """
    missing = [name for name, value in (("type", type), ("category", category), ("display_name", display_name))
               if value is _REQUIRED]
    if missing:
        which = f"node {type!r}" if type is not _REQUIRED else "a node"
        fields = ", ".join(repr(m) for m in missing)
        raise NodeDefinitionError(
            f"@node(...) for {which}: missing required field{'s' if len(missing) > 1 else ''} {fields} "
            "(type: the base name; category: the palette group; display_name: the title shown in the editor)"
        )
    for name, value in (("type", type), ("category", category), ("display_name", display_name)):
        if not isinstance(value, str):
            raise NodeDefinitionError(
                f"@node(...) for node {type!r}: {name!r} must be text, got {builtins.type(value).__name__}"
            )

    def wrap(fn: ExecuteFn | None) -> Node:
        mode_defs: dict[str, NodeModeDefinition] | None = None
        mode_executes: dict[str, ExecuteFn] = {}
        if modes:
            mode_defs = {}
            for mode_id, mode in modes.items():
                mode_defs[mode_id] = NodeModeDefinition(
                    id=mode_id,
                    display_name=mode.display_name,
                    description=mode.description,
                    inputs=dict(mode.inputs),
                    outputs=dict(mode.outputs),
                    config_schema=dict(mode.config_schema) if mode.config_schema else None,
                )
                if mode.execute is not None:
                    mode_executes[mode_id] = mode.execute
        definition = NodeDefinition(
            type=type,
            namespace=namespace or "",
            category=category,
            display_name=display_name,
            description=description,
            inputs=dict(inputs or {}),
            outputs=dict(outputs or {}),
            config_schema=dict(config_schema) if config_schema else None,
            config_values=dict(config_values) if config_values else None,
            bypass_behavior=bypass_behavior,
            modes=mode_defs,
            default_mode_id=default_mode_id,
            mode_config_key=mode_config_key,
            client_script_url=client_script_url,
            width=width,
            dynamic_slots=dynamic_slots,
            is_preview_unsafe=is_preview_unsafe,
            deprecated=deprecated,
            experimental=experimental,
        )
        return Node(definition, fn, mode_executes, _caller_dir(fn))

    return wrap
