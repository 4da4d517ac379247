"""The RandomNumber client script, run in a real JavaScript engine with the editor's context."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the ES module")

HARNESS = """
import { setupClientNode } from "./RandomNumberNode.mjs";
const state = { value: 4294967295, mode: "增加" };
const ctx = {
  updateInputValue: (key, value) => { state[key] = value; },
  getNodeInputValue: (key) => state[key],
  setNodeOutputValue() {}, ref: null, watch: null,
};
const api = setupClientNode(null, { id: "n1" }, ctx);
const out = {};
const run = () => api.onWorkflowExecute({ nodeId: "n1", workflowContext: { nodes: [], edges: [] } });
run(); out.incrementWraps = state.value;
state.mode = "减少"; run(); out.decrementWraps = state.value;
state.value = 10; run(); out.decrement = state.value;
state.mode = "固定"; run(); out.fixed = state.value;
state.mode = "随机"; const draws = new Set();
for (let i = 0; i < 20; i++) { run(); draws.add(state.value); }
out.randomDraws = [...draws];
state.value = 5; api.onButtonClick("button_other"); out.otherButton = state.value;
api.onButtonClick("reroll"); out.reroll = state.value;
state.value = "garbage"; state.mode = "增加"; run(); out.fromGarbage = state.value;
console.log(JSON.stringify(out));
"""


def test_modes_and_reroll(core: dict[str, Any], tmp_path: Path) -> None:
    item = core["RandomNumber"]
    source = item.source_dir / item.definition.client_script_url
    (tmp_path / "RandomNumberNode.mjs").write_bytes(source.read_bytes())
    (tmp_path / "harness.mjs").write_text(HARNESS, encoding="utf-8")
    done = subprocess.run(["node", "harness.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["incrementWraps"] == 0
    assert out["decrementWraps"] == 4294967295
    assert out["decrement"] == 9
    assert out["fixed"] == 9
    assert len(out["randomDraws"]) > 1
    assert all(isinstance(v, int) and 0 <= v <= 4294967295 for v in out["randomDraws"])
    assert out["otherButton"] == 5
    assert isinstance(out["reroll"], int) and 0 <= out["reroll"] <= 4294967295
    assert out["fromGarbage"] == 1
