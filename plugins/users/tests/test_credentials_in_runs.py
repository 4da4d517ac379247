"""A node run by a user reads that user's stored credential (``ctx.credential``), end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comfytavern import Input, Output, hookimpl, node
from comfytavern_testing import client_for, make_kernel

FAST = {"password_memory_kib": 64, "password_iterations": 1, "password_lanes": 1}


@node(type="KeyFingerprint", category="test", display_name="Key fingerprint", namespace="credtest",
      inputs={"service": Input(data_flow_type="STRING", config={"default": "openai"})},
      outputs={"found": Output(data_flow_type="STRING")})
async def key_fingerprint(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    secret = await ctx.credential(inputs.get("service") or "openai")
    return {"found": "none" if secret is None else f"{len(secret)}:{secret[-3:]}"}


class CredentialNodes:
    name = "credential-test-nodes"
    NAMESPACE = "credtest"

    @hookimpl
    def register_nodes(self) -> list[Any]:
        return [key_fingerprint]


PAYLOAD = {"nodes": [{"id": "k", "fullType": "credtest:KeyFingerprint", "inputs": {}}]}


def run(client: Any) -> str:
    response = client.post("/api/prompt?wait=20", json=PAYLOAD)
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["status"] == "complete", record
    return str(record["outputs"]["k"]["found"])


def test_each_run_gets_its_owners_credential(tmp_path: Path) -> None:
    kernel = make_kernel(
        tmp_path,
        node_packs=[CredentialNodes()],
        storage={"projects": None, "accounts": "sqlite", "runs": None},
        auth={"mode": "multi-user", "settings": {"multi-user": {**FAST, "registration": "open"}}},
    )
    with client_for(kernel, client=("127.0.0.1", 1)) as alice, client_for(kernel, client=("127.0.0.1", 2)) as bob:
        alice.post("/api/auth/register", json={"username": "alice", "password": "password-1"})
        bob.post("/api/auth/register", json={"username": "bob", "password": "password-2"})
        assert run(alice) == "none"
        alice.post("/api/users/me/credentials", json={"serviceName": "OpenAI", "credential": "sk-alice-000-abc"})
        assert run(alice) == "16:abc"
        assert run(bob) == "none"
        bob.post("/api/users/me/credentials", json={"serviceName": "openai", "credential": "sk-bob-xyz"})
        assert run(bob) == "10:xyz"
        assert run(alice) == "16:abc"
