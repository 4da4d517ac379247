"""Input coercion shared by the core nodes.

Values reach a node as JSON would carry them (the editor sends numbers as numbers, but API
clients and presets may send numeric strings). Each helper accepts the reasonable spellings and
rejects everything else with a message naming the input, so a bad value fails the node clearly
instead of producing ``NaN`` or ``"[object Object]"`` as the original did.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from comfytavern import Input

__all__ = [
    "as_bool",
    "as_int",
    "as_number",
    "as_text",
    "format_number",
    "operation_mode_schema",
    "parse_escapes",
    "pick",
    "selected_mode",
    "to_json_text",
]

_MISSING = object()


def pick(inputs: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``inputs[key]``, or ``default`` when the key is absent or ``None`` (not connected)."""
    value = inputs.get(key, _MISSING)
    return default if value is _MISSING or value is None else value


def _kind(value: Any) -> str:
    return "a boolean" if isinstance(value, bool) else type(value).__name__


def as_number(value: Any, name: str) -> float:
    """A finite float from a number or a numeric string."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"input {name!r} must be a number, got {_kind(value) if value is not None else 'nothing'}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"input {name!r} must be a number, got the text {value!r}") from None
    else:
        raise ValueError(f"input {name!r} must be a number, got {_kind(value)}")
    if not math.isfinite(number):
        raise ValueError(f"input {name!r} must be a finite number, got {value!r}")
    return number


def as_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer from an int, an integral float or an integer string, optionally range-checked."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        as_float = as_number(value, name)
        if not as_float.is_integer():
            raise ValueError(f"input {name!r} must be a whole number, got {value!r}")
        number = int(as_float)
    if minimum is not None and number < minimum or maximum is not None and number > maximum:
        raise ValueError(f"input {name!r} must be between {minimum} and {maximum}, got {number}")
    return number


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def as_bool(value: Any, name: str) -> bool:
    """A boolean from a boolean, a number (non-zero is true) or ``"true"``/``"false"``."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ValueError(f"input {name!r} must be a boolean, got {value!r}")


def format_number(value: float | int) -> str:
    """Numbers as JavaScript prints them (``50`` not ``50.0``), so merged text matches the original."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", repr(value))


def to_json_text(value: Any) -> str:
    """Compact JSON like JavaScript's ``JSON.stringify`` (non-ASCII kept as is)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def as_text(value: Any) -> str:
    """Any input value as text: strings unchanged, numbers JavaScript-style, objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    try:
        return to_json_text(value)
    except (TypeError, ValueError):
        return str(value)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def parse_escapes(text: str) -> str:
    """Turn ``\\n \\t \\r \\" \\' \\\\`` into their characters; unknown escapes stay as typed.

    Separator and suffix widgets hold what the user typed, so ``\\n`` arrives as two characters.
    """
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)


def selected_mode(ctx: Any, config_key: str, modes: Mapping[str, Any], default: str) -> str:
    """The mode a multi-mode node runs: the engine's choice, else the config value, else the default."""
    mode = getattr(ctx, "mode_id", None) or ctx.config_values.get(config_key) or default
    if mode not in modes:
        raise ValueError(f"unknown {config_key} {mode!r}; expected one of: {', '.join(modes)}")
    return str(mode)


def operation_mode_schema(labels: Iterable[tuple[str, str]], default: str) -> dict[str, Input]:
    """The ``operationMode`` config widget of a multi-mode node: a searchable combo of modes."""
    return {
        "operationMode": Input(
            data_flow_type="STRING",
            display_name="运算模式",
            required=True,
            match_categories=["ComboOption"],
            config={
                "searchable": True,
                "suggestions": [{"value": mode, "label": label} for mode, label in labels],
                "default": default,
            },
        )
    }
