"""Schemathesis over a real ``comfytavern serve`` in each auth mode: what ``/openapi.json`` says
is what the server does.

Each mode gets its own server process (production defaults: Argon2id cost, throttles, body limit)
with a fresh data folder, a signed-in caller (``local``: the local user; ``local-password``: the
session cookie of a real login; ``multi-user``: an administrator's service API key), and one
schemathesis run (its CLI, as a user would run it) over every operation, uploads included. The run
must end with zero failures of the checks below: no 5xx, every status code, content type, header
and body (SSE events included) as documented, schema-invalid input refused, protected operations
refusing missing or bad credentials. Generation is deterministic (fixed seed, derandomised, which
also means no example database), so a failure reproduces.

Not checked: ``positive_data_acceptance`` (a schema cannot express rules between fields, e.g. a
body id that must match the URL) and the stateful checks (no stateful phase). Not fuzzed:
``POST /api/server/restart`` (it would restart the server under test; see ``test_restart.py``),
the WebSocket (not HTTP), and operations whose inputs carry URLs or host names (a generated
address could make the server connect out). In ``local-password``, logout runs in a second pass
because it ends the session the first pass uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(400)]

#: Test cases per operation and phase (the coverage phase adds its boundary cases on top).
MAX_EXAMPLES = 4
SEED = 20261202
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
        "ignored_auth",
    ]
)
PASSWORD = "correct horse battery staple"
NOT_FUZZED = {("POST", "/api/server/restart")}
URLISH = re.compile(r"(?i)(url|uri|host|endpoint|webhook|callback|base_?path|proxy)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def real_server(folder: Path, mode: str) -> Iterator[str]:
    """``comfytavern serve`` in a child process with production defaults; yields its base URL and
    checks afterwards that it logged no unhandled error."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = folder / "config.json"
    config.write_text(
        json.dumps(
            {
                "server": {"host": "127.0.0.1", "port": port},
                "auth": {"mode": mode},
                "nodes": {"custom_paths": []},
                "logging": {"level": "WARNING", "format": "json"},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "comfytavern", "serve", "--config", str(config), "--data-dir", str(folder / "data")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log_path.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.2)
            yield base_url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    errors = [line for line in log_path.read_text(errors="replace").splitlines() if '"level": "ERROR"' in line]
    assert not errors, "the server logged errors:\n" + "\n".join(errors[:20])


def _credentials(base_url: str, mode: str) -> dict[str, str]:
    """Headers of a signed-in caller for ``mode`` (set up the way a user would)."""
    if mode == "local":
        return {}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        if mode == "local-password":
            assert client.post("/api/auth/setup", json={"password": PASSWORD}).status_code == 201
            login = client.post("/api/auth/login", json={"password": PASSWORD})
            assert login.status_code == 200, login.text
            cookie = "; ".join(f"{k}={v}" for k, v in login.cookies.items())
            return {"Cookie": cookie}
        registered = client.post("/api/auth/register", json={"username": "admin", "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        assert client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD}).status_code == 200
        key = client.post("/api/users/me/service-keys", json={"name": "fuzz", "scopes": ["*"]})
        assert key.status_code == 201, key.text
        return {"Authorization": f"Bearer {key.json()['secret']}"}


def _property_names(schema: Any, components: dict[str, Any], seen: set[str]) -> set[str]:
    names: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[-1] not in seen:
            seen.add(ref.rsplit("/", 1)[-1])
            names |= _property_names(components.get(ref.rsplit("/", 1)[-1], {}), components, seen)
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                names |= set(value)
            names |= _property_names(value, components, seen)
    elif isinstance(schema, list):
        for item in schema:
            names |= _property_names(item, components, seen)
    return names


def _plan(spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(operation ids to fuzz, labels not fuzzed)."""
    components = spec.get("components", {}).get("schemas", {})
    fuzz, skipped = [], []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            label = f"{method.upper()} {path}"
            inputs = [op.get("requestBody", {}), op.get("parameters", [])]
            urlish = any(URLISH.search(n) for n in _property_names(inputs, components, set())) or any(
                URLISH.search(p.get("name", "")) for p in op.get("parameters", [])
            )
            if op.get("x-websocket") or (method.upper(), path) in NOT_FUZZED or urlish:
                skipped.append(label)
            else:
                fuzz.append(op["operationId"])
    return fuzz, skipped


def _schemathesis(base_url: str, headers: dict[str, str], operation_ids: list[str], report: Path) -> dict[str, Any]:
    """One CLI run; returns the figures of its JSON report (and the console text on failure)."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{base_url}/openapi.json",
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--generation-deterministic",
        # The caller's credentials are the ones given below, not generated cookie/bearer values.
        "--generation-with-security-parameters", "false",
        "--workers", "1",
        "--request-timeout", "30",
        "--no-color",
        "--report", "json,har",
        "--report-json-path", str(report.with_suffix(".json")),
        "--report-har-path", str(report.with_suffix(".har")),
    ]
    for operation_id in operation_ids:
        command += ["--include-operation-id", operation_id]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=360, cwd=report.parent)
    assert report.with_suffix(".json").exists(), done.stdout + done.stderr
    summary = json.loads(report.with_suffix(".json").read_text())
    statuses: dict[int, int] = {}
    for entry in json.loads(report.with_suffix(".har").read_text())["log"]["entries"]:
        status = int(entry["response"]["status"])
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "returncode": done.returncode,
        "output": done.stdout + done.stderr,
        "cases": summary["test_cases"]["generated"],
        "failures": sum(group["count"] for group in summary["failures"]) + sum(e["count"] for e in summary["errors"]),
        "tested": summary["operations"]["tested"],
        "statuses": statuses,
    }


@pytest.mark.parametrize("mode", ["local", "local-password", "multi-user"])
def test_the_server_does_what_its_openapi_document_says(tmp_path: Path, mode: str) -> None:
    started = time.monotonic()
    with real_server(tmp_path / mode, mode) as base_url:
        spec = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
        fuzz, skipped = _plan(spec)
        headers = _credentials(base_url, mode)
        passes = [[op for op in fuzz if op != "post_api_auth_logout"]]
        if "post_api_auth_logout" in fuzz:
            passes.append(["post_api_auth_logout"])
        runs = [_schemathesis(base_url, headers, ops, tmp_path / f"{mode}-{i}") for i, ops in enumerate(passes)]
    cases = sum(r["cases"] for r in runs)
    statuses: dict[int, int] = {}
    for r in runs:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    print(
        f"\n{mode}: {len(fuzz)} operations, {cases} cases, {sum(r['failures'] for r in runs)} failed checks, "
        f"statuses {dict(sorted(statuses.items()))}, {time.monotonic() - started:.0f}s; not fuzzed: {skipped}"
    )
    for r in runs:
        assert r["returncode"] == 0 and r["failures"] == 0, r["output"][-20000:]
    assert cases >= 150, cases
    assert not any(s >= 500 for s in statuses), statuses
    # The caller really was signed in: most operations answered something other than 401.
    assert sum(n for s, n in statuses.items() if 200 <= s < 300) >= 50, statuses
