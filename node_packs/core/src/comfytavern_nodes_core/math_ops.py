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


OPERATIONS: tuple[_Op, ...] = (
    _Op("add", "函数/相加", "相加", "将两个数相加", (_Arg("a", "数值 A"), _Arg("b", "数值 B")), "A + B 的计算结果", lambda a, b: a + b),
    _Op("subtract", "函数/相减", "相减", "从第一个数中减去第二个数", (_Arg("a", "数值 A"), _Arg("b", "数值 B")), "A - B 的计算结果", lambda a, b: a - b),
    _Op("multiply", "函数/相乘", "相乘", "将两个数相乘", (_Arg("a", "数值 A"), _Arg("b", "数值 B")), "A * B 的计算结果", lambda a, b: a * b),
    _Op(
        "multiply_add",
        "函数/乘后再加",
        "乘后再加",
        "计算 (A * B) + C",
        (_Arg("val1", "数值 A"), _Arg("val2", "数值 B"), _Arg("val3", "数值 C")),
        "(A * B) + C 的计算结果",
        lambda a, b, c: a * b + c,
    ),
    _Op("divide", "函数/相除", "相除", "用第一个数除以第二个数", (_Arg("a", "数值 A"), _Arg("b", "数值 B")), "A / B 的计算结果", _divide),
    _Op("power", "函数/幂", "幂", "计算底数的指数次幂", (_Arg("base", "底数"), _Arg("exponent", "指数", 2)), "base 的 exponent 次幂的结果", _power),
    _Op("logarithm", "函数/对数", "对数", "计算一个数的对数", (_Arg("value", "数值", 1), _Arg("base", "底数", math.e)), "value 以 base 为底的对数", _logarithm),
    _Op("sqrt", "函数/平方根", "平方根", "计算数值的平方根", (_Arg("value", "数值"),), "value 的非负平方根", _sqrt),
    _Op("inverse_sqrt", "函数/平方根取倒", "平方根取倒", "计算平方根的倒数", (_Arg("value", "数值"),), "value 的平方根的倒数", _inverse_sqrt),
    _Op("absolute", "函数/绝对值", "绝对值", "计算一个数的绝对值", (_Arg("value", "数值"),), "value 的绝对值", abs),
    _Op("exp", "函数/指数", "指数", "计算 e 的指数次幂", (_Arg("value", "数值"),), "e 的 value 次幂", math.exp),
    _Op("min", "比较/最小值", "最小值", "比较两个数并返回较小的值", (_Arg("a", "数值 A"), _Arg("b", "数值 B")), "A 和 B 中的较小值", min),
    _Op("max", "比较/最大值", "最大值", "比较两个数并返回较大的值", (_Arg("a", "数值 A"), _Arg("b", "数值 B")), "A 和 B 中的较大值", max),
    _Op(
        "lessThan",
        "比较/小于",
        "小于",
        "如果 A 小于 B，则返回1，否则返回0",
        (_Arg("a", "数值 A"), _Arg("b", "数值 B")),
        "如果 A < B，则为 1，否则为 0",
        lambda a, b: 1.0 if a < b else 0.0,
    ),
    _Op(
        "greaterThan",
        "比较/大于",
        "大于",
        "如果 A 大于 B，则返回1，否则返回0",
        (_Arg("a", "数值 A"), _Arg("b", "数值 B")),
        "如果 A > B，则为 1，否则为 0",
        lambda a, b: 1.0 if a > b else 0.0,
    ),
    _Op("sign", "比较/符号", "符号", "提取数值的符号", (_Arg("value", "数值"),), "返回 value 的符号 (-1, 0,或 1)", lambda v: float((v > 0) - (v < 0))),
    _Op("round", "舍入/四舍五入", "四舍五入", "将数值四舍五入到最接近的整数", (_Arg("value", "数值"),), "value 四舍五入到最接近的整数",
        lambda v: float(math.floor(v + 0.5))),
    _Op("floor", "舍入/向下取整", "向下取整", "返回小于或等于指定数值的最大整数", (_Arg("value", "数值"),), "不大于 value 的最大整数",
        lambda v: float(math.floor(v))),
    _Op("ceil", "舍入/向上取整", "向上取整", "返回大于或等于指定数值的最小整数", (_Arg("value", "数值"),), "不小于 value 的最小整数",
        lambda v: float(math.ceil(v))),
    _Op("truncate", "舍入/截断", "截断", "移除数值的小数部分", (_Arg("value", "数值"),), "value 去除小数部分后的整数", lambda v: float(math.trunc(v))),
    _Op("fraction", "舍入/分数", "分数", "仅保留数值的小数部分", (_Arg("value", "数值"),), "value 的小数部分", lambda v: v - math.floor(v)),
    _Op("modulo", "舍入/模数", "模数", "返回两个数相除的余数", (_Arg("a", "数值 A"), _Arg("b", "数值 B")), "A 除以 B 的余数", _modulo),
    _Op("sin", "三角函数/正弦", "正弦", "计算一个数的正弦值（输入为弧度）", (_Arg("value", "数值 (弧度)"),), "value (弧度) 的正弦值", math.sin),
    _Op("cos", "三角函数/余弦", "余弦", "计算一个数的余弦值（输入为弧度）", (_Arg("value", "数值 (弧度)"),), "value (弧度) 的余弦值", math.cos),
    _Op("tan", "三角函数/正切", "正切", "计算一个数的正切值（输入为弧度）", (_Arg("value", "数值 (弧度)"),), "value (弧度) 的正切值", math.tan),
    _Op(
        "asin",
        "三角函数/反正弦",
        "反正弦",
        "计算一个数的反正弦值（结果为弧度）",
        (_Arg("value", "数值 (-1 to 1)"),),
        "value 的反正弦值 (弧度)",
        _unit_range(math.asin, "asin"),
    ),
    _Op(
        "acos",
        "三角函数/反余弦",
        "反余弦",
        "计算一个数的反余弦值（结果为弧度）",
        (_Arg("value", "数值 (-1 to 1)"),),
        "value 的反余弦值 (弧度)",
        _unit_range(math.acos, "acos"),
    ),
    _Op("atan", "三角函数/反正切", "反正切", "计算一个数的反正切值（结果为弧度）", (_Arg("value", "数值"),), "value 的反正切值 (弧度)", math.atan),
    _Op("atan2", "三角函数/反正切2", "反正切2", "返回点(x, y)到x轴正半轴的逆时针旋转角度（弧度）", (_Arg("y", "Y"), _Arg("x", "X")),
        "点(x,y)与x轴正向的夹角 (弧度)",
        math.atan2),
    _Op("sinh", "三角函数/双曲正弦", "双曲正弦", "计算一个数的双曲正弦值", (_Arg("value", "数值"),), "value 的双曲正弦值", math.sinh),
    _Op("cosh", "三角函数/双曲余弦", "双曲余弦", "计算一个数的双曲余弦值", (_Arg("value", "数值"),), "value 的双曲余弦值", math.cosh),
    _Op("tanh", "三角函数/双曲正切", "双曲正切", "计算一个数的双曲正切值", (_Arg("value", "数值"),), "value 的双曲正切值", math.tanh),
    _Op("to_radians", "转换/到弧度", "到弧度", "将角度转换为弧度", (_Arg("degrees", "角度"),), "degrees 转换为弧度的结果", math.radians),
    _Op("to_degrees", "转换/到角度", "到角度", "将弧度转换为角度", (_Arg("radians", "弧度"),), "radians 转换为角度的结果", math.degrees),
)

_BY_ID = {op.id: op for op in OPERATIONS}

_CLAMP = Input(
    data_flow_type="BOOLEAN",
    display_name="钳制 (0-1)",
    description="将结果限制在0-1范围。可以连接布尔值。",
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
    description="执行各种数学运算",
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
