"""``@node(...)`` without a required field names the node and the field, and a folder pack that
does so fails alone with that message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfytavern import Input, node
from comfytavern.nodes.definition import NodeDefinitionError
from comfytavern_testing import make_kernel


@pytest.mark.parametrize(
    ("kwargs", "fields"),
    [
        ({"type": "Shout", "display_name": "Shout"}, "'category'"),
        ({"type": "Shout", "category": "text"}, "'display_name'"),
        ({"type": "Shout"}, "fields 'category', 'display_name'"),
        ({"category": "text", "display_name": "Shout"}, "'type'"),
    ],
)
def test_a_missing_required_field_is_named(kwargs: dict[str, Any], fields: str) -> None:
    with pytest.raises(NodeDefinitionError) as info:
        node(**kwargs)
    message = str(info.value)
    assert f"missing required field{'s' if ',' in fields else ''} {fields.removeprefix('fields ')}" in message
    if "type" in kwargs:
        assert "node 'Shout'" in message
    assert isinstance(info.value, TypeError)  # code catching TypeError keeps working


def test_a_field_of_the_wrong_type_is_named() -> None:
    with pytest.raises(NodeDefinitionError, match=r"node 'Shout': 'category' must be text, got int"):
        node(type="Shout", category=3, display_name="x")  # type: ignore[arg-type]


def test_complete_definitions_still_work() -> None:
    made = node(type="Ok", category="c", display_name="d", inputs={"a": Input("STRING")})(lambda i, c: {})
    assert made.definition.category == "c"


def test_a_folder_pack_with_a_missing_field_fails_alone_with_the_message(tmp_path: Path) -> None:
    folder = tmp_path / "custom_nodes"
    folder.mkdir()
    (folder / "shout.py").write_text(
        "from comfytavern import node\n"
        "@node(type='Shout', display_name='Shout')\n"
        "def shout(inputs, ctx):\n    return {}\n"
        "NODES = [shout]\n",
        encoding="utf-8",
    )
    kernel = make_kernel(tmp_path, storage={"projects": None, "accounts": None, "runs": None},
                         nodes={"custom_paths": ["custom_nodes"]})
    row = next(r for r in kernel.plugin_rows() if r["name"] == "custom_nodes/shout")
    assert row["status"] == "error"
    assert "NodeDefinitionError" in row["error"] and "node 'Shout'" in row["error"] and "'category'" in row["error"]
