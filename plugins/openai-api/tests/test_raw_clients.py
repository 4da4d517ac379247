"""Raw HTTP on a socket, shaped like the requests SillyTavern's server sends (node-fetch:
``Connection: close``, ``Accept-Encoding: gzip,deflate``, its default body with fields a
workflow does not use), against a real server: exact SSE framing, every error in OpenAI's
shape, and a client that hangs up (as SillyTavern does on "stop") interrupting the run."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

Server = Any
ST_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "*/*",
    "User-Agent": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "Accept-Encoding": "gzip,deflate",
    "Connection": "close",
}
ERROR_KEYS = {"message", "type", "param", "code"}


def st_body(model: str, text: str = "Hi there", **extra: Any) -> dict[str, Any]:
    """SillyTavern's default chat-completion request (plus ``extra``)."""
    return {
        "messages": [{"role": "system", "content": "Write the next reply."}, {"role": "user", "content": text}],
        "model": model,
        "temperature": 1,
        "max_tokens": 300,
        "stream": False,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "top_p": 1,
        "logit_bias": {},
        **extra,
    }


class Raw:
    """One HTTP/1.1 exchange on a plain socket; the body is de-chunked."""

    def __init__(self, base: str, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> None:
        parts = urlsplit(base)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed early")
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def chunks(self) -> Any:
        """The body's pieces as they arrive (chunked transfer encoding) or the whole body."""
        if self.headers.get("transfer-encoding") != "chunked":
            size = int(self.headers.get("content-length", "0"))
            while len(self.buffer) < size:
                self.buffer += self.sock.recv(65536)
            yield self.buffer[:size]
            return
        while True:
            size = int(self._until(b"\r\n"), 16)
            if size == 0:
                return
            while len(self.buffer) < size + 2:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("connection closed inside a chunk")
                self.buffer += data
            piece, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
            yield piece

    def body(self) -> bytes:
        data = b"".join(self.chunks())
        self.close()
        return data

    def json(self) -> Any:
        return json.loads(self.body())

    def close(self) -> None:
        self.sock.close()


def post(server: Server, path: str, payload: Any, key: str | None, **headers: str) -> Raw:
    auth = {"Authorization": f"Bearer {key}"} if key is not None else {}
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Raw(server.base, "POST", path, {**ST_HEADERS, **auth, **headers}, body)


def sse_events(data: bytes) -> list[str]:
    """The events of an SSE body; asserts the framing (``data: ...`` lines, blank-line separated)."""
    text = data.decode()
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        assert "\n" not in block, block
        if block.startswith(":"):
            continue
        assert block.startswith("data: "), block
        events.append(block.removeprefix("data: "))
    return events


def assert_openai_error(payload: Any, status: int, response_status: int, type_: str | None = None, code: str | None = None) -> dict[str, Any]:
    assert response_status == status, payload
    assert set(payload) == {"error"} and set(payload["error"]) == ERROR_KEYS, payload
    error = payload["error"]
    assert isinstance(error["message"], str) and error["message"]
    if type_ is not None:
        assert error["type"] == type_, error
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


# -- SillyTavern's requests --------------------------------------------------------------------
def test_sillytavern_lists_models(server: Server, model_factory: Any) -> None:
    model = model_factory()
    key = server.key()
    raw = Raw(server.base, "GET", "/v1/models", {**ST_HEADERS, "Authorization": f"Bearer {key}"})
    assert raw.status == 200 and raw.headers["content-type"] == "application/json"
    listing = raw.json()
    assert listing["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in listing["data"]] == [(model, "model", "default_user")]
    assert isinstance(listing["data"][0]["created"], int)


def test_sillytavern_default_request(server: Server, fake: Any, model_factory: Any) -> None:
    model = model_factory()
    raw = post(server, "/v1/chat/completions", st_body(model, "What a day"), server.key())
    assert raw.status == 200
    reply = raw.json()
    assert reply["object"] == "chat.completion" and reply["model"] == model
    assert reply["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "What a day"}, "finish_reason": "stop", "logprobs": None}
    ]
    assert reply["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    upstream = fake.requests[-1].body
    assert (upstream["temperature"], upstream["max_tokens"], upstream["top_p"]) == (1, 300, 1)
    assert "presence_penalty" not in upstream and "logit_bias" not in upstream  # the workflow has no such inputs


def test_sillytavern_streaming_framing(server: Server, fake: Any, model_factory: Any) -> None:
    model = model_factory()
    raw = post(server, "/v1/chat/completions", st_body(model, "stream me please now", stream=True), server.key())
    assert raw.status == 200 and raw.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert raw.headers["cache-control"] == "no-cache"
    events = sse_events(raw.body())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1]]
    assert pieces == ["stream ", "me ", "please ", "now"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    assert chunks[-1]["usage"]["completion_tokens"] == 4


def test_every_openai_field_is_accepted_and_unused_ones_ignored(server: Server, fake: Any, model_factory: Any) -> None:
    model = model_factory()
    extras = {
        "n": 1, "user": "someone", "stop": ["\nUser:"], "seed": 42, "logprobs": False, "top_logprobs": None,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "tool_choice": "auto",
        "parallel_tool_calls": True, "response_format": {"type": "text"}, "store": False, "metadata": {"a": "b"},
        "modalities": ["text"], "audio": None, "prediction": None, "reasoning_effort": "low", "service_tier": "auto",
        "web_search_options": {}, "functions": [], "function_call": "none", "max_completion_tokens": 77,
        "stream_options": None, "include_reasoning": True, "custom_vendor_field": {"x": [1, 2]},
    }
    raw = post(server, "/v1/chat/completions", st_body(model, "fields", **extras), server.key())
    assert raw.status == 200, raw.body()
    assert raw.json()["choices"][0]["message"]["content"] == "fields"
    upstream = fake.requests[-1].body
    assert upstream["seed"] == 42 and upstream["max_tokens"] == 300  # max_tokens wins over max_completion_tokens
    assert "tools" not in upstream and "n" not in upstream


def test_bearer_undefined_is_a_401_in_openai_shape(server: Server, model_factory: Any) -> None:
    model = model_factory()
    for raw in (
        post(server, "/v1/chat/completions", st_body(model), "undefined"),
        Raw(server.base, "GET", "/v1/models", {**ST_HEADERS, "Authorization": "Bearer undefined"}),
    ):
        error = assert_openai_error(raw.json(), 401, raw.status, "invalid_request_error", "invalid_api_key")
        assert error["message"].startswith("Incorrect API key provided")


def test_loopback_without_a_key_in_local_mode(server: Server, model_factory: Any) -> None:
    model = model_factory()
    raw = post(server, "/v1/chat/completions", st_body(model, "no key"), None)
    assert raw.status == 200 and raw.json()["choices"][0]["message"]["content"] == "no key"


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": 5}, "model"),
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"content": "x"}]}, None),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages[0].content"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "300"}, "max_tokens"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": "x"}, "seed"),
        ({"stop": 5}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": "y"}}, "stream_options.include_usage"),
        ({"presence_penalty": 9}, "presence_penalty"),
    ],
)
def test_malformed_values_of_used_fields_are_400(server: Server, model_factory: Any, change: dict[str, Any], param: str | None) -> None:
    model = model_factory()
    raw = post(server, "/v1/chat/completions", {**st_body(model), **change}, server.key())
    error = assert_openai_error(raw.json(), 400, raw.status, "invalid_request_error")
    if param is not None:
        assert error["param"] == param, error


@pytest.mark.parametrize("body", [b"", b"{not json", b"[]", b"null", b'"text"', b'{"messages": []}'])
def test_bad_bodies_are_400(server: Server, body: bytes) -> None:
    raw = post(server, "/v1/chat/completions", body, server.key())
    assert_openai_error(raw.json(), 400, raw.status, "invalid_request_error")


def test_unknown_models_are_404_model_not_found(server: Server, fake: Any, model_factory: Any, chat_doc: Any) -> None:
    model = model_factory()
    project, workflow = model.split("/")
    plain = chat_doc(fake.base_url, "echo", name="Plain")
    plain["interfaceInputs"] = {"text": {"key": "text", "dataFlowType": "STRING"}}
    not_chat = server.save(plain)
    key = server.key()
    for name in ["nope", "", f"{project}/nope", f"nope/{workflow}", f"{project}/{workflow}/x", f"../{workflow}",
                 f"{project}/..", not_chat, model.upper()]:
        raw = post(server, "/v1/chat/completions", st_body(name), key)
        error = assert_openai_error(raw.json(), 404, raw.status, "invalid_request_error", "model_not_found")
        assert error["param"] == "model" and name in error["message"]
    assert server.history() == []  # nothing ran


def test_broken_workflows_are_500_workflow_invalid(server: Server, fake: Any, chat_doc: Any) -> None:
    key = server.key()
    unknown_node = chat_doc(fake.base_url, "echo", name="Unknown node")
    unknown_node["nodes"].append({"id": "ghost", "type": "core:NoSuchNode", "position": {"x": 0, "y": 0}})
    needs_more = chat_doc(fake.base_url, "echo", name="Needs more")
    needs_more["interfaceInputs"]["persona"] = {"key": "persona", "dataFlowType": "STRING", "required": True}
    wrong_type = chat_doc(fake.base_url, "echo", name="Wrong type")
    wrong_type["interfaceInputs"]["messages"]["dataFlowType"] = "OBJECT"
    for doc, words in [(unknown_node, "core:NoSuchNode"), (needs_more, "'persona'"), (wrong_type, "expected OBJECT")]:
        raw = post(server, "/v1/chat/completions", st_body(server.save(doc)), key)
        error = assert_openai_error(raw.json(), 500, raw.status, "server_error", "workflow_invalid")
        assert words in error["message"], error


def test_a_required_mapped_input_missing_from_the_request_is_400(server: Server, fake: Any, chat_doc: Any) -> None:
    doc = chat_doc(fake.base_url, "echo")
    doc["interfaceInputs"]["seed"] = {"key": "seed", "dataFlowType": "INTEGER", "required": True}
    model = server.save(doc)
    raw = post(server, "/v1/chat/completions", st_body(model), server.key())
    assert assert_openai_error(raw.json(), 400, raw.status, "invalid_request_error")["param"] == "seed"
    ok = post(server, "/v1/chat/completions", st_body(model, seed=3), server.key())
    assert ok.status == 200 and ok.json()["choices"][0]["message"]["content"] == "Hi there"


def test_a_text_reply_output_is_one_chunk(server: Server, fake: Any, chat_doc: Any) -> None:
    doc = chat_doc(fake.base_url, "echo", name="Text reply")
    doc["edges"] = [e for e in doc["edges"] if e["id"] != "e_reply"]
    doc["edges"].append({"id": "e_text", "source": "llm", "sourceHandle": "responseText", "target": "default-group-output", "targetHandle": "reply"})
    doc["interfaceOutputs"]["reply"] = {"key": "reply", "dataFlowType": "STRING"}
    model = server.save(doc)
    key = server.key()
    assert post(server, "/v1/chat/completions", st_body(model, "as text"), key).json()["choices"][0]["message"]["content"] == "as text"
    events = sse_events(post(server, "/v1/chat/completions", st_body(model, "as one chunk", stream=True), key).body())
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {"content": "as one chunk"}, {}]


# -- hanging up ---------------------------------------------------------------------------------
def wait_status(server: Server, status: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = server.history()
        if items and items[0]["status"] == status:
            return dict(items[0])
        time.sleep(0.05)
    raise AssertionError(f"no run reached {status!r}: {server.history()}")


def test_hanging_up_mid_stream(server: Server, fake: Any, model_factory: Any) -> None:
    fake.reply = " ".join(f"w{i}" for i in range(80))
    model = model_factory("slow-80")
    raw = post(server, "/v1/chat/completions", st_body(model, stream=True), server.key())
    received = b""
    for piece in raw.chunks():
        received += piece
        if received.count(b'"content":"w') >= 2:
            break
    raw.close()
    assert fake.wait_disconnect(timeout=10) is not None
    assert fake.requests[-1].completed_at is None
    wait_status(server, "interrupted")


def test_hanging_up_before_the_first_byte(server: Server, fake: Any, model_factory: Any) -> None:
    model = model_factory("stall-before-first")
    # The headers are held back until the first piece of the reply: send and hang up without reading.
    parts = urlsplit(server.base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    body = json.dumps(st_body(model, stream=True)).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in {**ST_HEADERS, "Authorization": f"Bearer {server.key()}"}.items())
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert fake.wait_for(lambda f: bool(f.requests), timeout=10)
    sock.close()
    assert fake.wait_disconnect(timeout=10) is not None
    wait_status(server, "interrupted")


def test_hanging_up_on_a_plain_request(server: Server, fake: Any, model_factory: Any) -> None:
    fake.reply = " ".join(f"w{i}" for i in range(80))
    model = model_factory("slow-80")
    parts = urlsplit(server.base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    body = json.dumps(st_body(model)).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in {**ST_HEADERS, "Authorization": f"Bearer {server.key()}"}.items())
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert fake.wait_chunks(2, timeout=10)
    sock.close()
    assert fake.wait_disconnect(timeout=10) is not None
    assert fake.requests[-1].completed_at is None
    wait_status(server, "interrupted")


# -- settings ----------------------------------------------------------------------------------
def test_keepalive_comments_while_the_workflow_is_silent(server_factory: Any, fake: Any, chat_doc: Any) -> None:
    server = server_factory(plugins={"settings": {"openai-api": {"keepalive_seconds": 0.1}}})
    fake.reply = "slow words"
    model = server.save(chat_doc(fake.base_url, "slow-600"))
    raw = post(server, "/v1/chat/completions", st_body(model, stream=True), server.key())
    data = raw.body()
    assert b": keep-alive\n\n" in data
    events = sse_events(data)
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "slow words"


def test_max_run_seconds_interrupts_a_slow_workflow(server_factory: Any, fake: Any, chat_doc: Any) -> None:
    server = server_factory(plugins={"settings": {"openai-api": {"max_run_seconds": 0.5, "keepalive_seconds": 0.1}}})
    fake.reply = " ".join(f"w{i}" for i in range(100))
    model = server.save(chat_doc(fake.base_url, "slow-100"))
    raw = post(server, "/v1/chat/completions", st_body(model), server.key())
    assert_openai_error(raw.json(), 504, raw.status, "server_error", "timeout")
    assert fake.wait_disconnect(timeout=10) is not None
    events = sse_events(post(server, "/v1/chat/completions", st_body(model, stream=True), server.key()).body())
    last = json.loads(events[-1])
    assert last["error"]["code"] == "timeout" and set(last["error"]) == ERROR_KEYS
    assert fake.wait_disconnect(timeout=10) is not None
    assert [r["status"] for r in server.history()] == ["interrupted", "interrupted"]


def test_a_reply_bigger_than_the_event_buffer_arrives_whole(server_factory: Any, fake: Any, chat_doc: Any) -> None:
    server = server_factory(plugins={"settings": {"openai-api": {"event_buffer": 16}}})
    model = server.save(chat_doc(fake.base_url, "echo"))
    text = " ".join(f"word{i}" for i in range(3000))
    events = sse_events(post(server, "/v1/chat/completions", st_body(model, text, stream=True), server.key()).body())
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]) == text


def test_a_bad_setting_is_reported_naming_the_key(tmp_path: Any) -> None:
    from comfytavern.app import create_app
    from comfytavern_testing import make_kernel

    kernel = make_kernel(tmp_path, plugins_config={"settings": {"openai-api": {"keepalive_seconds": 0}}})
    create_app(kernel)
    row = next(r for r in kernel.plugin_rows() if r["name"] == "openai-api")
    assert row["status"] == "error" and "$.plugins.settings.openai-api" in row["error"]
    assert "keepalive_seconds" in row["error"]


# -- users ------------------------------------------------------------------------------------
def test_each_user_sees_and_runs_only_their_own_models(server_factory: Any, fake: Any, chat_doc: Any) -> None:
    server = server_factory(
        auth={"mode": "multi-user", "settings": {"multi-user": {"registration": "open"}}},
        plugins={"settings": {"llm": {"private_base_url_allowlist": ["127.0.0.1"]}}},
    )
    keys: dict[str, str] = {}
    models: dict[str, str] = {}
    for name in ("alice", "bob"):
        with httpx.Client(base_url=server.base, timeout=30) as session:
            assert session.post("/api/auth/register", json={"username": name, "password": f"{name}-password-1"}).status_code == 201
            made = session.post("/api/users/me/service-keys", json={"scopes": ["runs:write"]})
            assert made.status_code == 201, made.text
            keys[name] = made.json()["secret"]
            session.post("/api/projects", json={"name": "chat"})
            saved = session.post("/api/projects/chat/workflows", json=chat_doc(fake.base_url, "echo"))
            assert saved.status_code == 201, saved.text
            models[name] = f"chat/{saved.json()['id']}"
    for name, other in (("alice", "bob"), ("bob", "alice")):
        key = keys[name]
        listing = Raw(server.base, "GET", "/v1/models", {**ST_HEADERS, "Authorization": f"Bearer {key}"}).json()
        assert [m["id"] for m in listing["data"]] == [models[name]]
        assert listing["data"][0]["owned_by"] != "default_user"
        mine = post(server, "/v1/chat/completions", st_body(models[name], f"from {name}"), key)
        assert mine.status == 200 and mine.json()["choices"][0]["message"]["content"] == f"from {name}"
        theirs = post(server, "/v1/chat/completions", st_body(models[other]), key)
        assert_openai_error(theirs.json(), 404, theirs.status, code="model_not_found")
    # Without a key nothing is reachable in this mode (also from loopback).
    anonymous = post(server, "/v1/chat/completions", st_body(models["alice"]), None)
    error = assert_openai_error(anonymous.json(), 401, anonymous.status, code="invalid_api_key")
    assert error["message"].startswith("You didn't provide an API key")
