"""End to end on the assembled server: a card dropped into the library through the import route
is listed with its image, then a workflow loads it and builds the prompt context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfytavern_cards.testing import card_png, v2_card, v3_card
from comfytavern_testing import client_for, make_kernel

pytest.importorskip("comfytavern_executions", reason="the executions plugin (POST /api/prompt) is needed")
pytest.importorskip("comfytavern_characters", reason="the characters plugin is needed")


def edge(eid: str, source: str, handle: str, target: str, target_handle: str) -> dict[str, str]:
    return {"id": eid, "sourceNodeId": source, "sourceHandle": handle, "targetNodeId": target, "targetHandle": target_handle}


def test_card_to_context_over_http(tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path, storage={"projects": None, "accounts": None, "runs": None})
    card = v3_card(
        "Seraphina",
        description="{{char}} guards the forest.",
        first_mes="Welcome, {{user}}.",
        character_book={"entries": [{"keys": ["glade"], "content": "The glade is sacred.", "insertion_order": 1}]},
    )
    png = card_png([("chara", v2_card("Stale")), ("ccv3", card)], kind="zTXt")
    with client_for(kernel) as client:
        imported = client.post("/api/characters/import", files={"file": ("seraphina.png", png, "image/png")})
        assert imported.status_code == 201, imported.text
        image_name = imported.json()["data"]["imageName"]
        listed = client.get("/api/characters").json()["data"]
        assert [(e["name"], e["imageName"]) for e in listed] == [("Seraphina", image_name)]
        image = client.get(f"/api/characters/image/{image_name}")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"

        user_dir = tmp_path / "data" / "users" / "default_user"
        (user_dir / "chats").mkdir(parents=True)
        (user_dir / "chats" / "today.json").write_text(
            json.dumps([{"role": "user", "content": "Where is the glade?"}]), encoding="utf-8"
        )
        payload: dict[str, Any] = {
            "nodes": [
                {"id": "card", "fullType": "core:CharacterCardLoader", "configValues": {"cardResource": image_name}},
                {"id": "hist", "fullType": "core:HistoryLoader", "configValues": {"historyResource": "user://chats/today.json"}},
                {"id": "ctx", "fullType": "core:ContextBuilder", "inputs": {}},
            ],
            "edges": [
                edge("e1", "card", "characterData", "ctx", "characterData"),
                edge("e2", "hist", "historyMessages", "ctx", "historyMessages"),
            ],
        }
        record = client.post("/api/prompt?wait=20", json=payload).json()
        assert record["status"] == "complete", record
        user = "本地用户"
        assert record["outputs"]["ctx"]["finalMessages"] == [
            {"role": "system", "content": f"Write Seraphina's next reply in a fictional chat between Seraphina and {user}."},
            {"role": "system", "content": "The glade is sacred."},
            {"role": "system", "content": "Seraphina guards the forest."},
            {"role": "system", "content": "[Start a new Chat]"},
            {"role": "user", "content": "Where is the glade?"},
        ]

        # A loader pointed outside the user's folder fails with a clear node error, not a read.
        bad = {"nodes": [{"id": "p", "fullType": "core:PresetLoader", "configValues": {"presetResource": "system://sdk/config.json"}}], "edges": []}
        failed = client.post("/api/prompt?wait=20", json=bad).json()
        assert failed["status"] == "error", failed
        assert "only files in your own data folder" in json.dumps(failed, ensure_ascii=False)
