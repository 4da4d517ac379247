"""The nesting check on raw JSON text agrees with the depth of the parsed value, for strings
holding brackets, quotes and escapes (the check drops escape pairs and strings before counting)."""

from __future__ import annotations

import json
import random
from typing import Any

from comfytavern.http import _nesting_exceeds


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


ALPHABET = ["[", "]", "{", "}", '"', "\\", "a", "\n", "é", "\u2028", "\\\\", '\\"']


def random_value(rng: random.Random, level: int = 0) -> Any:
    r = rng.random()
    if level > 10 or r < 0.3:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8)))
    if r < 0.65:
        return [random_value(rng, level + 1) for _ in range(rng.randint(0, 3))]
    return {"".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 4))): random_value(rng, level + 1)
            for _ in range(rng.randint(0, 3))}


def test_the_check_matches_the_parsed_depth() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        value = random_value(rng)
        raw = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()
        for limit in (0, 1, 2, 4, 7):
            assert _nesting_exceeds(raw, limit) == (depth(value) > limit), raw


def test_brackets_inside_strings_do_not_count() -> None:
    raw = json.dumps({"a": "[[[[[[[[[[\\\"{{{{{{{{", "b": ["]]]]"]}).encode()
    assert not _nesting_exceeds(raw, 2)
    assert _nesting_exceeds(b"[" * 10 + b"]" * 10, 9)
