"""Names from users never become paths unless they are one plain segment."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfytavern.safety import UnsafeName, check_name, resolve_inside


@pytest.mark.parametrize("name", ["My Project", "我的项目", "café", "a.b", "x" * 200])
def test_safe_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (".", "'.' or '..'"),
        ("..", "'.' or '..'"),
        ("a/b", "not allowed"),
        ("a\\b", "not allowed"),
        ("a\x00b", "not allowed"),
        ("a\nb", "not allowed"),
        ("a\u202eb", "not allowed"),
        (" lead", "spaces"),
        ("trail.", "end with a dot"),
        (".hidden", "start with a dot"),
        ("CON", "reserved"),
        ("lpt1.txt", "reserved"),
        ("x" * 201, "too long"),
        ("好" * 67, "too long"),
        ("a\udcffb", "not valid UTF-8"),
        ("a:b", "not allowed"),
    ],
)
def test_unsafe_names(name: str, reason: str) -> None:
    with pytest.raises(UnsafeName) as info:
        check_name(name)
    assert reason in str(info.value)


def test_resolve_inside(tmp_path: Path) -> None:
    assert resolve_inside(tmp_path, "a", "b") == (tmp_path / "a" / "b").resolve()
    with pytest.raises(UnsafeName):
        resolve_inside(tmp_path, "..", "etc")
    (tmp_path / "link").symlink_to("/")
    with pytest.raises(UnsafeName):
        resolve_inside(tmp_path, "link", "etc")
