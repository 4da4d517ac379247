"""Revocation across instances: two ``comfytavern serve`` processes sharing PostgreSQL and Redis.

A key deleted on A closes the socket opened with it on B (4401) at once; ``comfytavern revoke-key``
run in its own process reaches B the same way; a socket of another key stays open and runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from comfytavern_distributed.cluster import LocalCluster
from comfytavern_testing_contracts.services import postgres_dsn, postgres_schema, redis_prefix, redis_url
from comfytavern_testnodes import node_folder as node_folder_with_testnodes

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RUN = {"nodes": [{"id": "c", "fullType": "t:Const", "inputs": {"value": 7}}], "edges": []}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with postgres_schema() as schema, redis_prefix() as prefix:
        root = tmp_path / "cluster"
        with LocalCluster(
            root, dsn=postgres_dsn(), schema=schema, redis_url=redis_url(), prefix=prefix,
            node_paths=[node_folder_with_testnodes(root)],
        ) as running:
            try:
                yield running
            except BaseException:
                print(running.logs())
                raise


def new_key(base: str) -> tuple[str, str]:
    response = httpx.post(f"{base}/api/users/me/service-keys", json={"scopes": ["runs:*"]}, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["id"]), str(response.json()["secret"])


def ws(url: str, key: str) -> ClientConnection:
    return connect(url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=10)


def close_code(socket: ClientConnection) -> tuple[int, str]:
    try:
        while True:
            socket.recv(timeout=20)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return exc.rcvd.code, exc.rcvd.reason
    except TimeoutError:
        raise AssertionError("the socket is still open") from None


def completes(socket: ClientConnection) -> bool:
    socket.send(json.dumps({"type": "PROMPT_REQUEST", "payload": RUN}))
    while True:
        message: dict[str, Any] = json.loads(socket.recv(timeout=30))
        assert message["type"] != "error", message
        if message["type"] == "EXECUTION_STATUS_UPDATE" and message["payload"]["status"] in ("complete", "error", "interrupted"):
            return bool(message["payload"]["status"] == "complete")


def test_a_key_revoked_on_one_instance_closes_its_socket_on_another(cluster: LocalCluster) -> None:
    a = cluster.start_server("a", execute=True)
    revoked_id, revoked = new_key(a.url)
    cli_id, cli_revoked = new_key(a.url)
    _, kept = new_key(a.url)
    # Several instances share the service-key pepper (docs/auth.md): give B the one A created.
    shutil.copytree(cluster.root / "a" / "data" / "secret", cluster.root / "b" / "data" / "secret")
    b = cluster.start_server("b", execute=True)

    with ws(b.ws_url, revoked) as on_b, ws(b.ws_url, cli_revoked) as cli_on_b, ws(b.ws_url, kept) as kept_on_b:
        assert completes(on_b)
        assert httpx.delete(f"{a.url}/api/users/me/service-keys/{revoked_id}", timeout=10).status_code == 204
        assert close_code(on_b) == (4401, "the API key was revoked")

        done = subprocess.run(
            [sys.executable, "-m", "comfytavern", "revoke-key", cli_id, "--config", str(cluster.root / "a" / "config.json")],
            capture_output=True, text=True, timeout=120, check=False, cwd=cluster.root / "a",
        )
        assert done.returncode == 0, done.stderr
        assert close_code(cli_on_b) == (4401, "the API key was revoked")

        assert completes(kept_on_b)
