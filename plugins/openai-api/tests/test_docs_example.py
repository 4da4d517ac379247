"""docs/openai-api.md stays true: the example file as documented, the settings table, and a run
interrupted from elsewhere while a client streams it."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import msgspec
import openai
import pytest
from openai import OpenAI

from comfytavern_openai_api.settings import OpenAIApiSettings

DOCS = Path(__file__).resolve().parents[3] / "docs"
EXAMPLE = DOCS / "examples" / "openai-chat-model" / "chat-model.json"


def test_the_example_file_saved_as_documented_is_the_model_chat_chat_model(server: Any) -> None:
    assert httpx.post(f"{server.base}/api/projects", json={"name": "chat"}, timeout=10).status_code == 201
    saved = httpx.post(f"{server.base}/api/projects/chat/workflows", content=EXAMPLE.read_bytes(),
                       headers={"Content-Type": "application/json"}, timeout=10)
    assert saved.status_code == 201, saved.text
    with OpenAI(base_url=server.v1, api_key=server.key(), max_retries=0) as client:
        listing = client.models.list()
    assert [m.id for m in listing.data] == ["chat/chat-model"]
    doc = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert set(doc["interfaceInputs"]) == {"messages", "temperature", "max_tokens", "top_p", "seed"}
    assert set(doc["interfaceOutputs"]) == {"reply", "usage"}


def test_every_setting_is_documented() -> None:
    text = (DOCS / "openai-api.md").read_text(encoding="utf-8")
    defaults = msgspec.to_builtins(OpenAIApiSettings())
    for field, value in defaults.items():
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"| `{field}` | `{shown}` |" in text, f"{field} (default {shown}) is not in docs/openai-api.md"


def test_a_run_interrupted_elsewhere_ends_the_stream_with_an_error(server: Any, fake: Any, model_factory: Any, request: Any) -> None:
    fake.reply = " ".join(f"w{i}" for i in range(60))
    model = model_factory("slow-100")
    client = OpenAI(base_url=server.v1, api_key=server.key(), max_retries=0, timeout=30)
    request.addfinalizer(client.close)
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "go"}], stream=True)
    request.addfinalizer(stream.close)
    got = 0
    with pytest.raises(openai.APIError) as failed:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got += 1
                if got == 2:
                    prompt_id = chunk.id.removeprefix("chatcmpl-")
                    # From another connection, as the editor or a script would.
                    threading.Thread(
                        target=httpx.post, args=(f"{server.base}/api/interrupt/{prompt_id}",), kwargs={"timeout": 10}
                    ).start()
    assert "interrupted" in failed.value.message
    assert fake.wait_disconnect(timeout=10) is not None
    assert server.run(prompt_id)["status"] == "interrupted"
