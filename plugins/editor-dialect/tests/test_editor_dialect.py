"""Editor dialects: the configuration key, choosing one, and every translation at the wire.

Real app, real routes (``/api/auth/current`` of the users plugin, ``/api/nodes``, the WebSocket of
the executions plugin), the real seed-era build when the shared folder has it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import comfytavern_testnodes as testnodes
from comfytavern.cli import main as cli_main
from comfytavern.config import ConfigError, load_config
from comfytavern_editor_dialect import dialect_for
from comfytavern_editor_dialect.translate import LATER, SEED, SYNTHETIC_FINISH, Dialect
from comfytavern_testing import client_for, editor_build, make_kernel, seed_frontend_dist

SEED_DIST = seed_frontend_dist()


def _kernel(tmp_path: Path, dist: Path | None = None, **overrides: Any) -> Any:
    plugins: dict[str, Any] = {}
    if dist is not None:
        plugins = {"settings": {"static-frontend": {"dist": str(dist)}}}
    return make_kernel(tmp_path, plugins_config=plugins, node_packs=[testnodes], **overrides)


# -- configuration -----------------------------------------------------------------------------
def test_default_is_auto_and_explicit_values_are_accepted(tmp_path: Path) -> None:
    assert load_config(None, environ={}).editor.dialect == "auto"
    for name in ("auto", SEED, LATER):
        assert load_config(None, environ={}, overrides={"editor": {"dialect": name}}).editor.dialect == name
    assert load_config(None, environ={"CT_EDITOR__DIALECT": SEED}).editor.dialect == SEED


def test_an_unknown_dialect_stops_start_up_naming_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={}, overrides={"editor": {"dialect": "2024"}})
    message = str(caught.value)
    assert "$.editor.dialect" in message and "'2024'" in message
    assert "auto, 2025-10, seed-2025-06" in message


def test_check_config_reports_an_unknown_dialect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"editor": {"dialect": "june"}}), encoding="utf-8")
    assert cli_main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "$.editor.dialect" in err and "seed-2025-06" in err


def test_auto_picks_the_served_build_and_explicit_values_win(tmp_path: Path) -> None:
    seed = editor_build(tmp_path / "seed", '"LocalNoPassword"')
    later = editor_build(tmp_path / "later", '"SingleUser"')
    assert dialect_for(_kernel(tmp_path / "k1", seed)).name == SEED
    assert dialect_for(_kernel(tmp_path / "k2", later)).name == LATER
    assert dialect_for(_kernel(tmp_path / "k3")).name == LATER  # no frontend served
    assert dialect_for(_kernel(tmp_path / "k4", seed, editor={"dialect": LATER})).name == LATER
    assert dialect_for(_kernel(tmp_path / "k5", editor={"dialect": SEED})) == Dialect(SEED, "editor.dialect")


# -- GET /api/auth/current ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("auth", "native", "seed"),
    [
        ({"mode": "local"}, "SingleUser", "LocalNoPassword"),
        ({"mode": "local-password"}, "SingleUser", "LocalWithPassword"),
        ({"mode": "multi-user"}, "MultiUser", "MultiUserShared"),
    ],
)
def test_auth_mode_names(tmp_path: Path, auth: dict[str, Any], native: str, seed: str) -> None:
    with client_for(_kernel(tmp_path / "a", auth=auth)) as client:
        assert client.get("/api/auth/current").json()["mode"] == native
    with client_for(_kernel(tmp_path / "b", auth=auth, editor={"dialect": SEED})) as client:
        body = client.get("/api/auth/current").json()
    assert body["mode"] == seed


def test_seed_first_run_context_and_rename(tmp_path: Path) -> None:
    """What the seed editor's nickname modal and Settings need: LocalNoPassword + 本地用户, rename."""
    with client_for(_kernel(tmp_path, editor={"dialect": SEED})) as client:
        body = client.get("/api/auth/current").json()
        assert body["mode"] == "LocalNoPassword" and body["isAuthenticated"] is True
        assert body["currentUser"]["username"] == "本地用户" and body["currentUser"]["id"]
        changed = client.put("/api/users/me/username", json={"username": "Anchor"})
        assert changed.status_code == 200 and changed.json()["success"] is True
        assert client.get("/api/auth/current").json()["currentUser"]["username"] == "Anchor"


# -- GET /api/nodes ----------------------------------------------------------------------------
def _stream_slots(definitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        slot
        for d in definitions
        for group in ("inputs", "outputs")
        for slot in d[group].values()
        if slot.get("isStream") or slot["dataFlowType"] == "STREAM"
    ]


def test_native_node_listing_is_untouched(tmp_path: Path) -> None:
    kernel = _kernel(tmp_path)
    with client_for(kernel) as client:
        response = client.get("/api/nodes")
    assert response.content == kernel.registry.current.definitions_json
    slots = _stream_slots(response.json())
    assert slots and all(s["isStream"] is True for s in slots)


def test_seed_node_listing_has_stream_slots_and_plain_suggestions(tmp_path: Path) -> None:
    with client_for(_kernel(tmp_path, editor={"dialect": SEED})) as client:
        response = client.get("/api/nodes")
        assert response.status_code == 200
        assert int(response.headers["content-length"]) == len(response.content)
        definitions = response.json()
        again = client.get("/api/nodes", headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
    by_type = {(d["namespace"], d["type"]): d for d in definitions}
    relay = by_type[("core", "StreamSuffixRelay")]
    assert relay["inputs"]["inputStream"]["dataFlowType"] == "STREAM"
    assert relay["outputs"]["outputStream"]["dataFlowType"] == "STREAM"
    assert by_type[("core", "OpenAI")]["outputs"]["stream_output"]["dataFlowType"] == "STREAM"
    assert "isStream" not in json.dumps(definitions)
    assert by_type[("core", "RandomNumber")]["inputs"]["mode"]["config"]["suggestions"] == ["固定", "增加", "减少", "随机"]
    modes = by_type[("core", "MathOperation")]["modes"]
    assert modes["add"]["inputs"]["a"]["dataFlowType"] == "FLOAT"  # non-stream slots keep their type


def test_other_responses_are_not_rewritten(tmp_path: Path) -> None:
    with client_for(_kernel(tmp_path, editor={"dialect": SEED})) as client:
        missing = client.get("/api/nodes/core/Nope/client-script/x.js")
        assert missing.status_code == 404 and "error" in missing.json()
        assert client.post("/api/nodes/reload", json={}).json()["success"] is True


# -- WebSocket ---------------------------------------------------------------------------------
STREAM_RUN = {
    "nodes": [
        {"id": "c", "fullType": "t:Const", "inputs": {"value": 1}},
        {"id": "s", "fullType": "t:Stream", "inputs": {"parts": ["a", "b", "c"]}},
        {"id": "k", "fullType": "t:Collect"},
    ],
    "edges": [{"id": "e1", "sourceNodeId": "s", "sourceHandle": "stream", "targetNodeId": "k", "targetHandle": "stream"}],
}


def _run_then_probe(kernel: Any) -> list[dict[str, Any]]:
    """Every frame of one run, then the frames up to the reply to a probe sent after it ended."""
    frames: list[dict[str, Any]] = []
    with client_for(kernel) as client, client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "PROMPT_REQUEST", "payload": STREAM_RUN})
        while True:
            frames.append(ws.receive_json())
            if frames[-1]["type"] == "EXECUTION_STATUS_UPDATE" and frames[-1]["payload"]["status"] == "complete":
                break
        ws.send_json({"type": "UNSUBSCRIBE_PROMPT", "payload": {}})  # answered with an error frame
        while True:
            frames.append(ws.receive_json())
            if frames[-1]["type"] == "error":
                return frames


def _shape(frames: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    out = []
    for m in frames:
        p = m["payload"]
        out.append((m["type"], p.get("nodeId") or p.get("sourceNodeId") or p.get("status"), p.get("yieldedContent")))
    return out


def test_seed_websocket_drops_queue_updates_and_synthetic_yields(tmp_path: Path) -> None:
    native = _shape(_run_then_probe(_kernel(tmp_path / "a")))
    seed = _shape(_run_then_probe(_kernel(tmp_path / "b", editor={"dialect": SEED})))
    assert ("SYSTEM_QUEUE_UPDATE", None, None) in native
    assert ("NODE_YIELD", "c", SYNTHETIC_FINISH) in native
    expected = [
        f for f in native if f[0] != "SYSTEM_QUEUE_UPDATE" and not (f[0] == "NODE_YIELD" and f[2] == SYNTHETIC_FINISH)
    ]
    assert seed == expected
    assert [f[2] for f in seed if f[0] == "NODE_YIELD"] == [{"type": "text_chunk", "content": p} for p in "abc"]


def test_seed_ws_translator_keeps_real_finish_chunks() -> None:
    translate = Dialect(SEED).ws_translator()
    assert translate is not None and Dialect(LATER).ws_translator() is None
    real = {"promptId": "p", "sourceNodeId": "n", "yieldedContent": {"type": "finish_reason_chunk", "content": "stop"}, "isLastChunk": True}
    assert translate("NODE_YIELD", real) == {"type": "NODE_YIELD", "payload": real}
    synthetic = {**real, "yieldedContent": dict(SYNTHETIC_FINISH)}
    assert translate("NODE_YIELD", synthetic) is None
    assert translate("SYSTEM_QUEUE_UPDATE", {"runningExecutions": 0, "pendingExecutions": 0}) is None
    status = {"promptId": "p", "status": "complete"}
    assert translate("EXECUTION_STATUS_UPDATE", status) == {"type": "EXECUTION_STATUS_UPDATE", "payload": status}


def test_an_unknown_name_from_a_plugin_is_ignored_and_the_first_known_one_wins(tmp_path: Path) -> None:
    from comfytavern import hookimpl

    class Unknown:
        @hookimpl
        def detect_editor_dialect(self, kernel: Any) -> str | None:
            return "1999"  # ignored with a warning

    class Recognises:
        @hookimpl
        def detect_editor_dialect(self, kernel: Any) -> str | None:
            return SEED

    kernel = make_kernel(tmp_path, plugins=[Unknown(), Recognises()], node_packs=[testnodes])
    assert dialect_for(kernel) == Dialect(SEED, "auto: recognised by plugin Recognises")


def test_disabled_plugin_means_the_native_dialect_everywhere(tmp_path: Path) -> None:
    kernel = make_kernel(
        tmp_path, plugins_config={"disabled": ["editor-dialect"]}, node_packs=[testnodes], editor={"dialect": SEED}
    )
    with client_for(kernel) as client:
        assert client.get("/api/auth/current").json()["mode"] == "SingleUser"
