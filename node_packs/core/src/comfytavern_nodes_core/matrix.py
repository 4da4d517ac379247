"""``MatrixOperation``: add, subtract, multiply, transpose, invert and determinant.

Operands are numbers, vectors (``[1, 2]``) or matrices (``[[1, 0], [0, 1]]``), given as values
or as their JSON text (the inputs' default is the text ``"[[1, 0], [0, 1]]"``). Shapes follow
linear algebra: a scalar combines with anything element-wise, vectors of equal length multiply
to their dot product, a matrix times a vector gives a vector. Integer matrices are inverted and
their determinants computed exactly (fractions), so ``[[1, 2], [3, 4]]`` inverts to
``[[-2, 1], [1.5, -0.5]]`` without rounding noise. It runs in a worker thread (CPU-bound), and
operands are limited to :data:`MAX_ELEMENTS` numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any, TypeAlias

from comfytavern import Input, Mode, NodeContext, Output, node
from comfytavern_nodes_core.values import operation_mode_schema, pick, selected_mode

__all__ = ["MAX_ELEMENTS", "NODES", "matrix_operation"]

MAX_ELEMENTS = 40_000
IDENTITY_TEXT = "[[1, 0], [0, 1]]"

Number: TypeAlias = int | float
Operand: TypeAlias = Number | list[Number] | list[list[Number]]


# -- parsing ------------------------------------------------------------------------------------
def _number(value: Any, name: str) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"input {name!r}: matrix entries must be numbers, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"input {name!r}: matrix entries must be finite numbers")
    return value


def parse_operand(value: Any, name: str) -> Operand:
    """A scalar, a vector or a rectangular matrix from a value or its JSON text."""
    if value is None:
        raise ValueError(f"input {name!r} is required")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"input {name!r} is not a number, vector or matrix: {value[:60]!r}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(value, name)
    if not isinstance(value, list) or not value:
        raise ValueError(f"input {name!r} must be a number, a non-empty vector or a matrix")
    if all(isinstance(row, list) for row in value):
        width = len(value[0])
        if width == 0 or any(len(row) != width for row in value):
            raise ValueError(f"input {name!r}: every matrix row must have the same, non-zero length")
        if len(value) * width > MAX_ELEMENTS:
            raise ValueError(f"input {name!r}: matrices are limited to {MAX_ELEMENTS} numbers")
        return [[_number(x, name) for x in row] for row in value]
    if len(value) > MAX_ELEMENTS:
        raise ValueError(f"input {name!r}: vectors are limited to {MAX_ELEMENTS} numbers")
    return [_number(x, name) for x in value]


def _is_matrix(x: Operand) -> bool:
    return isinstance(x, list) and isinstance(x[0], list)


def _shape(x: Operand) -> str:
    if not isinstance(x, list):
        return "a scalar"
    if _is_matrix(x):
        return f"a {len(x)}×{len(x[0])} matrix"  # type: ignore[arg-type]
    return f"a vector of length {len(x)}"


# -- element-wise ---------------------------------------------------------------------------------
def _elementwise(a: Operand, b: Operand, fn: Callable[[Number, Number], Number], what: str) -> Operand:
    if not isinstance(a, list) and not isinstance(b, list):
        return fn(a, b)
    if not isinstance(a, list):
        return _map(b, lambda y: fn(a, y))  # type: ignore[arg-type]
    if not isinstance(b, list):
        return _map(a, lambda x: fn(x, b))
    if _is_matrix(a) != _is_matrix(b) or len(a) != len(b) or (_is_matrix(a) and len(a[0]) != len(b[0])):  # type: ignore[arg-type]
        raise ValueError(f"cannot {what} {_shape(a)} and {_shape(b)}: the shapes differ")
    if _is_matrix(a):
        return [[fn(x, y) for x, y in zip(ra, rb, strict=False)] for ra, rb in zip(a, b, strict=False)]  # type: ignore[arg-type]
    return [fn(x, y) for x, y in zip(a, b, strict=False)]  # type: ignore[arg-type]


def _map(x: Operand, fn: Callable[[Number], Number]) -> Operand:
    if _is_matrix(x):
        return [[fn(v) for v in row] for row in x]  # type: ignore[union-attr,arg-type]
    return [fn(v) for v in x]  # type: ignore[union-attr,arg-type]


# -- products -------------------------------------------------------------------------------------
def _dot(u: list[Number], v: list[Number]) -> Number:
    return sum(x * y for x, y in zip(u, v, strict=False))


def _multiply(a: Operand, b: Operand) -> Operand:
    if not isinstance(a, list) or not isinstance(b, list):
        return _elementwise(a, b, lambda x, y: x * y, "multiply")
    a_matrix, b_matrix = _is_matrix(a), _is_matrix(b)
    inner_a = len(a[0]) if a_matrix else len(a)  # type: ignore[arg-type]
    inner_b = len(b)
    if inner_a != inner_b:
        raise ValueError(f"cannot multiply {_shape(a)} by {_shape(b)}: inner dimensions {inner_a} and {inner_b} differ")
    if not a_matrix and not b_matrix:
        return _dot(a, b)  # type: ignore[arg-type]
    if a_matrix and not b_matrix:
        return [_dot(row, b) for row in a]  # type: ignore[arg-type, misc]
    columns = list(zip(*b, strict=False))  # type: ignore[misc]
    if not a_matrix:
        return [_dot(a, list(col)) for col in columns]  # type: ignore[arg-type]
    return [[_dot(row, list(col)) for col in columns] for row in a]  # type: ignore[arg-type, misc]


def _transpose(x: Operand) -> Operand:
    if isinstance(x, list) and _is_matrix(x):
        return [list(col) for col in zip(*x, strict=False)]  # type: ignore[misc]
    return x


# -- elimination ----------------------------------------------------------------------------------
def _square(x: Operand, what: str) -> list[list[Number]]:
    if not isinstance(x, list) or not _is_matrix(x) or len(x) != len(x[0]):  # type: ignore[arg-type]
        raise ValueError(f"{what} needs a square matrix, got {_shape(x)}")
    return x  # type: ignore[return-value]


def _exact(m: list[list[Number]]) -> bool:
    return all(isinstance(v, int) for row in m for v in row)


def _eliminate(m: list[list[Any]], augment: list[list[Any]] | None) -> Any:
    """Gauss-Jordan with partial pivoting; returns the determinant (0 when singular)."""
    n = len(m)
    exact = isinstance(m[0][0], Fraction)
    scale = max(abs(v) for row in m for v in row) or 1
    tolerance = 0 if exact else 1e-12 * scale
    det: Any = Fraction(1) if exact else 1.0
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) <= tolerance:
            return 0
        if pivot != col:
            m[col], m[pivot] = m[pivot], m[col]
            if augment is not None:
                augment[col], augment[pivot] = augment[pivot], augment[col]
            det = -det
        p = m[col][col]
        det *= p
        for r in range(n):
            if r == col or m[r][col] == 0:
                continue
            factor = m[r][col] / p
            m[r] = [x - factor * y for x, y in zip(m[r], m[col], strict=False)]
            if augment is not None:
                augment[r] = [x - factor * y for x, y in zip(augment[r], augment[col], strict=False)]
        if augment is not None:
            m[col] = [x / p for x in m[col]]
            augment[col] = [x / p for x in augment[col]]
    return det


def _working_copy(m: list[list[Number]]) -> list[list[Any]]:
    if _exact(m):
        return [[Fraction(v) for v in row] for row in m]
    return [[float(v) for v in row] for row in m]


def _invert(x: Operand) -> Operand:
    if not isinstance(x, list):
        if x == 0:
            raise ValueError("cannot invert 0")
        return 1 / x
    m = _square(x, "invert")
    work = _working_copy(m)
    n = len(m)
    one, zero = (Fraction(1), Fraction(0)) if _exact(m) else (1.0, 0.0)
    inverse = [[one if i == j else zero for j in range(n)] for i in range(n)]
    if _eliminate(work, inverse) == 0:
        raise ValueError("the matrix is singular (its determinant is 0), so it has no inverse")
    return [[_plain(v) for v in row] for row in inverse]


def _determinant(x: Operand) -> float:
    if not isinstance(x, list):
        return float(x)
    m = _square(x, "det")
    return float(_eliminate(_working_copy(m), None)) + 0.0


def _plain(v: Any) -> Number:
    if isinstance(v, Fraction):
        return v.numerator if v.denominator == 1 else float(v)
    return float(v) + 0.0  # turns -0.0 into 0.0


# -- definition -----------------------------------------------------------------------------------
def _operand(display_name: str) -> Input:
    return Input(
        data_flow_type="OBJECT",
        display_name=display_name,
        required=True,
        match_categories=["Matrix"],
        config={"default": IDENTITY_TEXT},
    )


def _single() -> dict[str, Input]:
    return {"matrix": Input(data_flow_type="OBJECT", display_name="矩阵", required=True, match_categories=["Matrix"])}


_PAIR_INPUTS = {"a": _operand("矩阵 A"), "b": _operand("矩阵 B")}
_ANY_RESULT = {"result": Output(data_flow_type="WILDCARD", display_name="结果", description="输出可以是矩阵或标量")}
_MATRIX_RESULT = {"result": Output(data_flow_type="OBJECT", display_name="结果", match_categories=["Matrix"])}

_BINARY: dict[str, Callable[[Operand, Operand], Operand]] = {
    "add": lambda a, b: _elementwise(a, b, lambda x, y: x + y, "add"),
    "subtract": lambda a, b: _elementwise(a, b, lambda x, y: x - y, "subtract"),
    "multiply": _multiply,
}
_UNARY: dict[str, Callable[[Operand], Any]] = {"transpose": _transpose, "invert": _invert, "det": _determinant}

_MODES = {
    "add": Mode(display_name="相加", description="将两个矩阵或标量相加", inputs=_PAIR_INPUTS, outputs=_ANY_RESULT),
    "subtract": Mode(display_name="相减", description="将两个矩阵或标量相减", inputs=_PAIR_INPUTS, outputs=_ANY_RESULT),
    "multiply": Mode(
        display_name="相乘",
        description="将两个矩阵、向量或标量相乘",
        inputs=_PAIR_INPUTS,
        outputs={"result": Output(data_flow_type="WILDCARD", display_name="结果", description="输出可以是矩阵或标量（例如向量点积）")},
    ),
    "transpose": Mode(display_name="转置", description="计算矩阵的转置", inputs=_single(), outputs=_MATRIX_RESULT),
    "invert": Mode(display_name="求逆", description="计算方阵的逆", inputs=_single(), outputs=_MATRIX_RESULT),
    "det": Mode(
        display_name="行列式",
        description="计算方阵的行列式",
        inputs=_single(),
        outputs={"result": Output(data_flow_type="FLOAT", display_name="行列式")},
    ),
}

_LABELS = {
    "add": "矩阵/相加",
    "subtract": "矩阵/相减",
    "multiply": "矩阵/相乘",
    "transpose": "矩阵/转置",
    "invert": "矩阵/求逆",
    "det": "矩阵/行列式",
}


@node(
    type="MatrixOperation",
    category="数学",
    display_name="矩阵运算",
    description="执行各种矩阵运算",
    inputs=_PAIR_INPUTS,
    outputs=_ANY_RESULT,
    config_schema=operation_mode_schema(_LABELS.items(), "add"),
    config_values={"operationMode": "add"},
    modes=_MODES,
    default_mode_id="add",
    mode_config_key="operationMode",
)
def matrix_operation(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    mode = selected_mode(ctx, "operationMode", _MODES, "add")
    if mode in _BINARY:
        a = parse_operand(pick(inputs, "a", IDENTITY_TEXT), "a")
        b = parse_operand(pick(inputs, "b", IDENTITY_TEXT), "b")
        return {"result": _BINARY[mode](a, b)}
    return {"result": _UNARY[mode](parse_operand(inputs.get("matrix"), "matrix"))}


NODES = (matrix_operation,)
