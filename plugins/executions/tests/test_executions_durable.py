"""A promptId is handed out (HTTP answer, ``PROMPT_ACCEPTED_RESPONSE``) only once the run's record
is in the run store, so a crash right after the acknowledgement cannot lose it; a store that
refuses the record refuses the run (503 / an ``error`` reply), never an id that will 404.

The store is the real SQLite run history, behind a disk that takes a while to write (the
situation in which acknowledgements used to overtake the history writer)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

import comfytavern_testnodes as testnodes
from comfytavern import StorageBackend, hookimpl
from comfytavern.kernel import Kernel
from comfytavern.services import SCHEDULER
from comfytavern.storage.runs import RunRecord
from comfytavern_storage_sqlite.database import shared_database
from comfytavern_storage_sqlite.runs import SqliteRunStore
from comfytavern_testing import client_for, header_auth_plugin, make_config

ALICE = {"X-User": "alice"}
#: How long the slow disk takes per write: far longer than answering a request.
WRITE_SECONDS = 0.25


class SlowDiskRuns(SqliteRunStore):
    """The real SQLite run store on a disk that needs ``WRITE_SECONDS`` per write."""

    async def save(self, record: RunRecord) -> None:
        await anyio.sleep(WRITE_SECONDS)
        await super().save(record)


class BrokenRuns(SqliteRunStore):
    """The real SQLite run store on a disk that fails every write."""

    async def save(self, record: RunRecord) -> None:
        raise OSError(28, "No space left on device")


class RunsBackend:
    name = "test-runs-backend"

    def __init__(self, cls: type[SqliteRunStore]) -> None:
        self.cls = cls

    @hookimpl
    def register_storage_backends(self, kernel: Any) -> list[StorageBackend]:
        def create(kernel: Any, settings: Mapping[str, Any]) -> Any:
            return self.cls(shared_database(kernel.services, kernel.config.data_path("database")))

        return [StorageBackend("test-disk", "runs", create)]


def kernel_with(tmp_path: Path, cls: type[SqliteRunStore]) -> Kernel:
    config = make_config(
        tmp_path,
        auth={"mode": "test-header"},
        storage={"projects": None, "accounts": None, "runs": "test-disk"},
        plugins={"enabled": ["executions", "storage-sqlite"]},
    )
    return Kernel(config, plugins=[header_auth_plugin(query_param="user"), RunsBackend(cls)], node_packs=[testnodes])


def stored_status(database: Path, prompt_id: str) -> str | None:
    """What a process opening the database file after a crash would find (own connection)."""
    with sqlite3.connect(database) as conn:
        row = conn.execute("SELECT status FROM runs WHERE prompt_id = ?", (prompt_id,)).fetchone()
    return None if row is None else str(row[0])


def sleeper(seconds: float) -> dict[str, Any]:
    return {"nodes": [{"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": seconds}}]}


def invalid() -> dict[str, Any]:
    return {"nodes": [{"id": "x", "fullType": "t:NoSuchNode"}]}


def test_http_answers_only_stored_prompt_ids(tmp_path: Path) -> None:
    kernel = kernel_with(tmp_path, SlowDiskRuns)
    database = kernel.config.data_path("database")
    with client_for(kernel) as client:
        # Runs that start at once and runs that wait in the queue (max_concurrent_workflows 5).
        for _ in range(7):
            response = client.post("/api/prompt", json=sleeper(30), headers=ALICE)
            assert response.status_code == 200, response.text
            prompt_id = response.json()["promptId"]
            assert stored_status(database, prompt_id) == "queued", "acknowledged before it was stored"
        for run in client.get("/api/executions", headers=ALICE).json()["running"]:
            client.delete(f"/api/interrupt/{run['promptId']}", headers=ALICE)


def test_websocket_acknowledges_only_stored_prompt_ids(tmp_path: Path) -> None:
    kernel = kernel_with(tmp_path, SlowDiskRuns)
    database = kernel.config.data_path("database")
    with client_for(kernel) as client, client.websocket_connect("/ws?user=alice") as ws:
        for payload, first_status in ((sleeper(0), "queued"), (invalid(), "error")):
            ws.send_json({"type": "PROMPT_REQUEST", "payload": payload})
            message = ws.receive_json()
            assert message["type"] == "PROMPT_ACCEPTED_RESPONSE", message
            prompt_id = message["payload"]["promptId"]
            # Checked before reading anything else: the acknowledgement is the first frame.
            assert stored_status(database, prompt_id) == first_status, "acknowledged before it was stored"
            finished = False
            while not finished or message["type"] != "SYSTEM_QUEUE_UPDATE":
                message = ws.receive_json()
                finished = finished or (
                    message["type"] == "EXECUTION_STATUS_UPDATE" and message["payload"]["status"] in ("complete", "error")
                )


def test_a_store_that_cannot_record_refuses_the_run(tmp_path: Path) -> None:
    kernel = kernel_with(tmp_path, BrokenRuns)
    with client_for(kernel) as client:
        response = client.post("/api/prompt", json=sleeper(0), headers=ALICE)
        assert response.status_code == 503, response.text
        assert "not accepted" in response.json()["error"]
        assert client.get("/api/executions", headers=ALICE).json() == {"running": [], "pending": []}
        with client.websocket_connect("/ws?user=alice") as ws:
            ws.send_json({"type": "PROMPT_REQUEST", "payload": sleeper(0)})
            message = ws.receive_json()
            assert message["type"] == "error" and "not accepted" in message["payload"]["message"], message
            ws.send_json({"type": "PROMPT_REQUEST", "payload": invalid()})
            message = ws.receive_json()
            assert message["type"] == "error" and "not accepted" in message["payload"]["message"], message


@pytest.mark.anyio
async def test_parallel_submissions_are_all_stored_when_acknowledged(kernel_factory: Any) -> None:
    """Production storage (the plain SQLite run store), 40 submissions at once."""
    kernel = kernel_factory()
    database = kernel.config.data_path("database")
    from comfytavern.auth import Principal
    from comfytavern.engine import convert_payload

    alice = Principal(id="alice", username="alice")
    missing: list[str] = []
    async with kernel.lifespan():
        scheduler = kernel.services.require(SCHEDULER)

        async def one() -> None:
            prompt_id = await scheduler.submit(convert_payload(sleeper(0.01)), alice)
            # No await between the acknowledgement and the check.
            if stored_status(database, prompt_id) is None:
                missing.append(prompt_id)

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(one)
    assert missing == []
