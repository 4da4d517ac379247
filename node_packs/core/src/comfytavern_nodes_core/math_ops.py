"""``MathOperation``: one multi-mode node for scalar maths (the set of Blender's Math node).

The mode is the node's ``operationMode`` config value; each mode has its own inputs (``a``/``b``,
``value``, ``base``/``exponent``...) plus ``clamp``, which limits the result to 0..1. Results are
always finite floats: a division by zero, a square root of a negative number or an overflow is
a clear error, never ``NaN`` or ``Infinity``. Unlike the original, a connected ``0`` stays ``0``
(the original replaced falsy values with the defaults, so ``x^0`` computed ``x^2``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from comfytavern import Input, Mode, NodeContext, Output, node

from comfytavern_nodes_core.values import as_bool, as_number, operation_mode_schema, pick, selected_mode

__all__ = ["NODES", "OPERATIONS", "math_operation"]

_NO_DEFAULT = object()


@dataclass(frozen=True)
class _Arg:
    key: str
    display_name: str
    default: Any = _NO_DEFAULT


@dataclass(frozen=True)
class _Op:
    id: str
    label: str  # the editor's searchable menu entry: "<group>/<name>"
    display_name: str
    description: str
    args: tuple[_Arg, ...]
    result: str
    fn: Callable[..., float]


def _domain(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _divide(a: float, b: float) -> float:
    _domain(b != 0, "division by zero: input 'b' is 0")
    return a / b


def _power(base: float, exponent: float) -> float:
    _domain(base != 0 or exponent >= 0, "0 cannot be raised to a negative power")
    _domain(
        base >= 0 or exponent.is_integer(),
        "a negative base needs a whole-number exponent (the result would not be a real number)",
    )
    return math.pow(base, exponent)


def _logarithm(value: float, base: float) -> float:
    _domain(value > 0, "the logarithm needs a value greater than 0")
    _domain(base > 0 and base != 1, "the logarithm base must be greater than 0 and not 1")
    return math.log(value, base)


def _sqrt(value: float) -> float:
    _domain(value >= 0, "the square root of a negative number is not a real number")
    return math.sqrt(value)


def _inverse_sqrt(value: float) -> float:
    _domain(value > 0, "the inverse square root needs a value greater than 0")
    return 1.0 / math.sqrt(value)


def _modulo(a: float, b: float) -> float:
    _domain(b != 0, "modulo by zero: input 'b' is 0")
    return math.fmod(a, b)


def _unit_range(fn: Callable[[float], float], name: str) -> Callable[[float], float]:
    def checked(value: float) -> float:
        _domain(-1 <= value <= 1, f"{name} needs a value between -1 and 1")
        return fn(value)

    return checked


_AB = (_Arg("a", "A"), _Arg("b", "B"))
_VALUE = (_Arg("value", "数值"),)
_RADIANS = (_Arg("value", "弧度"),)

OPERATIONS: tuple[_Op, ...] = (
    _Op("add", "函数/相加", "加", "A 加 B", _AB, "A + B", lambda a, b: a + b),
    _Op("subtract", "函数/相减", "减", "A 减 B", _AB, "A − B", lambda a, b: a - b),
    _Op("multiply", "函数/相乘", "乘", "A 乘 B", _AB, "A × B", lambda a, b: a * b),
    _Op(
        "multiply_add",
        "函数/乘后再加",
        "乘加",
        "先把 A 与 B 相乘，再加上 C",
        (_Arg("val1", "A"), _Arg("val2", "B"), _Arg("val3", "C")),
        "A × B + C",
        lambda a, b, c: a * b + c,
    ),
    _Op("divide", "函数/相除", "除", "A 除以 B（B 不能为 0）", _AB, "A ÷ B", _divide),
    _Op(
        "power",
        "函数/幂",
        "幂",
        "底数的指数次方",
        (_Arg("base", "底数"), _Arg("exponent", "指数", 2)),
        "底数的指数次方",
        _power,
    ),
    _Op(
        "logarithm",
        "函数/对数",
        "对数",
        "以给定底数求对数（默认自然对数）",
        (_Arg("value", "数值", 1), _Arg("base", "底数", math.e)),
        "以底数为底的对数",
        _logarithm,
    ),
    _Op("sqrt", "函数/平方根", "平方根", "非负数的平方根", _VALUE, "√数值", _sqrt),
    _Op("inverse_sqrt", "函数/平方根取倒", "平方根倒数", "1 除以平方根（数值须大于 0）", _VALUE, "1 / √数值", _inverse_sqrt),
    _Op("absolute", "函数/绝对值", "绝对值", "去掉符号", _VALUE, "|数值|", abs),
    _Op("exp", "函数/指数", "自然指数", "e 的数值次方", _VALUE, "e 的数值次方", math.exp),
    _Op("min", "比较/最小值", "较小值", "A、B 中较小的一个", _AB, "min(A, B)", min),
    _Op("max", "比较/最大值", "较大值", "A、B 中较大的一个", _AB, "max(A, B)", max),
    _Op("lessThan", "比较/小于", "小于", "A 小于 B 时为 1，否则为 0", _AB, "A < B 时为 1，否则 0", lambda a, b: 1.0 if a < b else 0.0),
    _Op("greaterThan", "比较/大于", "大于", "A 大于 B 时为 1，否则为 0", _AB, "A > B 时为 1，否则 0", lambda a, b: 1.0 if a > b else 0.0),
    _Op("sign", "比较/符号", "符号", "正数为 1，负数为 −1，零为 0", _VALUE, "−1、0 或 1", lambda v: float((v > 0) - (v < 0))),
    _Op("round", "舍入/四舍五入", "四舍五入", "取最接近的整数（.5 向上）", _VALUE, "最接近的整数", lambda v: float(math.floor(v + 0.5))),
    _Op("floor", "舍入/向下取整", "向下取整", "不大于数值的最大整数", _VALUE, "⌊数值⌋", lambda v: float(math.floor(v))),
    _Op("ceil", "舍入/向上取整", "向上取整", "不小于数值的最小整数", _VALUE, "⌈数值⌉", lambda v: float(math.ceil(v))),
    _Op("truncate", "舍入/截断", "截断", "直接去掉小数部分", _VALUE, "整数部分", lambda v: float(math.trunc(v))),
    _Op("fraction", "舍入/分数", "小数部分", "数值减去向下取整后的部分（总在 0 到 1 之间）", _VALUE, "数值 − ⌊数值⌋", lambda v: v - math.floor(v)),
    _Op("modulo", "舍入/模数", "取余", "A 除以 B 的余数（符号同 A）", _AB, "A mod B", _modulo),
    _Op("sin", "三角函数/正弦", "正弦", "弧度的正弦", _RADIANS, "sin", math.sin),
    _Op("cos", "三角函数/余弦", "余弦", "弧度的余弦", _RADIANS, "cos", math.cos),
    _Op("tan", "三角函数/正切", "正切", "弧度的正切", _RADIANS, "tan", math.tan),
    _Op("asin", "三角函数/反正弦", "反正弦", "结果为弧度", (_Arg("value", "数值（−1 到 1）"),), "asin（弧度）", _unit_range(math.asin, "asin")),
    _Op("acos", "三角函数/反余弦", "反余弦", "结果为弧度", (_Arg("value", "数值（−1 到 1）"),), "acos（弧度）", _unit_range(math.acos, "acos")),
    _Op("atan", "三角函数/反正切", "反正切", "结果为弧度", _VALUE, "atan（弧度）", math.atan),
    _Op(
        "atan2",
        "三角函数/反正切2",
        "二参数反正切",
        "点 (x, y) 相对 x 轴正方向的角度（弧度）",
        (_Arg("y", "Y"), _Arg("x", "X")),
        "atan2(y, x)（弧度）",
        math.atan2,
    ),
    _Op("sinh", "三角函数/双曲正弦", "双曲正弦", "双曲正弦", _VALUE, "sinh", math.sinh),
    _Op("cosh", "三角函数/双曲余弦", "双曲余弦", "双曲余弦", _VALUE, "cosh", math.cosh),
    _Op("tanh", "三角函数/双曲正切", "双曲正切", "双曲正切", _VALUE, "tanh", math.tanh),
    _Op("to_radians", "转换/到弧度", "角度转弧度", "把角度换算成弧度", (_Arg("degrees", "角度"),), "弧度", math.radians),
    _Op("to_degrees", "转换/到角度", "弧度转角度", "把弧度换算成角度", (_Arg("radians", "弧度"),), "角度", math.degrees),
)

_BY_ID = {op.id: op for op in OPERATIONS}

_CLAMP = Input(
    data_flow_type="BOOLEAN",
    display_name="限制到 0–1",
    description="打开后把结果限制在 0 到 1 之间（也可以连接布尔值）",
    config={"default": False},
)


def _inputs(op: _Op) -> dict[str, Input]:
    slots = {
        arg.key: Input(
            data_flow_type="FLOAT",
            display_name=arg.display_name,
            required=True,
            config=None if arg.default is _NO_DEFAULT else {"default": arg.default},
        )
        for arg in op.args
    }
    slots["clamp"] = _CLAMP
    return slots


def _outputs(op: _Op) -> dict[str, Output]:
    return {"result": Output(data_flow_type="FLOAT", display_name="结果", description=op.result)}


def _compute(op: _Op, values: list[float]) -> float:
    try:
        result = float(op.fn(*values))
    except OverflowError:
        raise ValueError(f"{op.id}: the result is too large") from None
    except ZeroDivisionError as exc:
        raise ValueError(f"{op.id}: {exc}") from None
    if not math.isfinite(result):
        raise ValueError(f"{op.id}: the result is not a finite number")
    return result


@node(
    type="MathOperation",
    category="数学",
    display_name="数学运算",
    description="对数字做一次运算：在“运算模式”里选择加减乘除、幂与对数、比较、舍入、三角函数或单位换算。",
    inputs=_inputs(_BY_ID["add"]),
    outputs=_outputs(_BY_ID["add"]),
    config_schema=operation_mode_schema(((op.id, op.label) for op in OPERATIONS), "add"),
    config_values={"operationMode": "add"},
    modes={
        op.id: Mode(display_name=op.display_name, description=op.description, inputs=_inputs(op), outputs=_outputs(op))
        for op in OPERATIONS
    },
    default_mode_id="add",
    mode_config_key="operationMode",
)
async def math_operation(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    op = _BY_ID[selected_mode(ctx, "operationMode", _BY_ID, "add")]
    values = []
    for arg in op.args:
        raw = pick(inputs, arg.key, None if arg.default is _NO_DEFAULT else arg.default)
        if raw is None:
            raise ValueError(f"input {arg.key!r} is required for {op.id}")
        values.append(as_number(raw, arg.key))
    result = _compute(op, values)
    if as_bool(pick(inputs, "clamp", False), "clamp"):
        result = min(max(result, 0.0), 1.0)
    return {"result": result}


NODES = (math_operation,)
