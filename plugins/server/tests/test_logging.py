"""Structured logs: request ids (X-Request-Id), run ids, secret redaction, JSON vs text."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from starlette.requests import Request
from starlette.responses import Response

from comfytavern import hookimpl, json_response, route
from comfytavern.logs import (
    REDACTED,
    ContextFilter,
    JsonFormatter,
    RedactingFilter,
    TextFormatter,
    configure_logging,
    redact,
    run_context,
)
from comfytavern_testing import client_for, make_config

SECRETS = [
    "ctsk_9f8e7d6c5b4a3210fedcba9876543210",
    "sk-proj-AbCdEf0123456789xyz",
    "hunter2-correct-horse",
    "s3cr3t-credential-value",
    "dGhpcyBpcyBhIHRva2Vu",
]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Root logging into a JSON stream with the production filters, restored afterwards."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("key ctsk_9f8e7d6c5b4a3210fedcba9876543210 used", "9f8e7d6c5b4a3210"),
        ("openai says sk-proj-AbCdEf0123456789xyz is bad", "AbCdEf0123456789"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("{'authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz"),
        ('{"password": "hunter2-correct-horse", "user": "bob"}', "hunter2"),
        ("login password=hunter2 ok", "hunter2"),
        ("GET /cb?api_key=abcdef123&x=1", "abcdef123"),
        ("client_secret: 'shh-very-secret'", "shh-very-secret"),
        ("credentials=s3cr3t-credential-value", "s3cr3t"),
        ("postgresql://app:p4ssw0rd@db:5432/ct", "p4ssw0rd"),
        ("refresh_token=dGhpcyBpcyBhIHRva2Vu", "dGhpcyBpcyBhIHRva2Vu"),
        ("Cookie: ct_session=abcdef0123456789", "abcdef0123456789"),
    ],
)
def test_secrets_are_redacted(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=100 prompt_tokens: 5",
        "skip-this-node and task-runner",
        "user bob logged in from 127.0.0.1",
        "GET /api/projects/p1/workflows/wf-2 200",
        "the key of the map is 'name'",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_the_filter_redacts_messages_arguments_extras_and_tracebacks(captured: io.StringIO) -> None:
    log = logging.getLogger("comfytavern.test.redaction")
    log.info("using key %s for %s", SECRETS[0], "bob")
    log.warning(
        "provider call",
        extra={
            "password": SECRETS[2],
            "headers": {"Authorization": "Bearer xyz", "Accept": "text/plain"},
            "detail": f"credential={SECRETS[3]}",
            "items": [SECRETS[1]],
        },
    )
    try:
        raise RuntimeError(f"upstream rejected {SECRETS[1]} with token={SECRETS[4]}")
    except RuntimeError:
        log.exception("failed")
    output = captured.getvalue()
    for secret in SECRETS:
        assert secret not in output
    records = lines(captured)
    assert records[0]["message"] == f"using key ctsk_{REDACTED} for bob"
    assert records[1]["password"] == REDACTED
    assert records[1]["headers"] == {"Authorization": REDACTED, "Accept": "text/plain"}
    assert "RuntimeError" in records[2]["exception"] and REDACTED in records[2]["exception"]


class LoggingPlugin:
    name = "logging-test-plugin"

    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def noisy(request: Request) -> Response:
            logging.getLogger("comfytavern.test.route").info("handling with %s", request.headers.get("authorization"))
            return json_response({"ok": True})

        return [route("/api/test-noisy", noisy, auth="public")]


def test_request_ids_are_returned_and_logged(tmp_path: Any, captured: io.StringIO) -> None:
    from comfytavern.kernel import Kernel

    kernel = Kernel(
        make_config(tmp_path, storage={"projects": None, "accounts": None, "runs": None}),
        plugins=[LoggingPlugin()],
    )
    with client_for(kernel) as client:
        generated = client.get("/api/test-noisy", headers={"Authorization": f"Bearer {SECRETS[0]}"})
        echoed = client.get("/api/test-noisy", headers={"X-Request-Id": "trace-42.abc"})
        invalid = client.get("/api/test-noisy", headers={"X-Request-Id": "bad id with spaces"})
        too_long = client.get("/api/test-noisy", headers={"X-Request-Id": "x" * 129})
        error = client.get("/api/nothing-here", headers={"X-Request-Id": "err-1"})
    first = generated.headers["x-request-id"]
    assert len(first) == 16 and int(first, 16) >= 0
    assert echoed.headers["x-request-id"] == "trace-42.abc"
    assert invalid.headers["x-request-id"] not in ("bad id with spaces", first)
    assert len(too_long.headers["x-request-id"]) == 16
    assert error.status_code == 404 and error.headers["x-request-id"] == "err-1"
    records = lines(captured)
    handled = [r for r in records if r["logger"] == "comfytavern.test.route"]
    assert [r["request_id"] for r in handled[:2]] == [first, "trace-42.abc"]
    assert SECRETS[0] not in captured.getvalue()
    access = [r for r in records if r["logger"] == "comfytavern.access"]
    assert any(r["request_id"] == "err-1" and r["status"] == 404 and r["path"] == "/api/nothing-here" for r in access)
    assert all("duration_ms" in r and r["method"] == "GET" for r in access)


def test_run_ids_reach_records_and_child_tasks(captured: io.StringIO) -> None:
    log = logging.getLogger("comfytavern.test.run")

    async def main() -> None:
        async def node() -> None:
            log.info("node ran")

        with run_context("prompt-123"):
            log.info("run started")
            async with anyio.create_task_group() as tg:
                tg.start_soon(node)
            await anyio.to_thread.run_sync(lambda: log.info("in a worker thread"))
        log.info("after the run")

    anyio.run(main)
    records = {r["message"]: r for r in lines(captured)}
    assert records["run started"]["run_id"] == "prompt-123"
    assert records["node ran"]["run_id"] == "prompt-123"
    assert records["in a worker thread"]["run_id"] == "prompt-123"
    assert "run_id" not in records["after the run"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_on_a_terminal_json_otherwise(tmp_path: Any) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        config = make_config(tmp_path)
        tty = _Tty()
        handler = configure_logging(config, stream=tty)
        assert isinstance(handler.formatter, TextFormatter)
        with run_context("r-9"):
            logging.getLogger("comfytavern.test.fmt").warning("password=%s", "hunter2")
        text = tty.getvalue()
        assert "WARNING" in text and "comfytavern.test.fmt" in text and "[run=r-9]" in text
        assert "hunter2" not in text

        pipe = io.StringIO()
        handler = configure_logging(config, stream=pipe)
        assert isinstance(handler.formatter, JsonFormatter)
        logging.getLogger("comfytavern.test.fmt").warning("structured")
        record = json.loads(pipe.getvalue().splitlines()[-1])
        assert record["level"] == "WARNING" and record["message"] == "structured" and record["time"].endswith("Z")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
