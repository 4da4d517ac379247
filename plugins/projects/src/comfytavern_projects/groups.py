"""Node-group sync: after a workflow is saved, the workflows that embed it as a NodeGroup are
brought in line with its interface (the rule is :func:`apply_group_interface`, docs/projects.md).

It runs before the save is answered, each referrer rewritten under the project's lock, so a client
that reloads a referrer right after the save sees the result; it is idempotent, so a sync cut
short by a crash is completed by the next save of the same workflow.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from comfytavern.safety import UnsafeName
from comfytavern.storage.projects import (
    ProjectStore,
    ProjectStoreError,
    group_references,
    group_target,
    utc_now_iso,
)

__all__ = ["apply_group_interface", "normalise_references", "sync_group_users"]

log = logging.getLogger("comfytavern.projects")


def normalise_references(doc: dict[str, Any]) -> None:
    """Make ``referencedWorkflows`` agree with the NodeGroup nodes (in place).

    The client's order is kept when it names the same set, so a consistent document is stored
    byte-for-byte as sent.
    """
    derived = group_references(doc)
    sent = doc.get("referencedWorkflows")
    if isinstance(sent, list) and len(sent) == len(derived) and set(sent) == set(derived):
        return
    doc["referencedWorkflows"] = derived


def _slot_key(handle: Any) -> str | None:
    """A handle's slot key: multi-input sub-handles ``key__n`` belong to ``key``."""
    if not isinstance(handle, str) or not handle:
        return None
    base, sep, index = handle.rpartition("__")
    return base if sep and base and index.isdigit() else handle


def apply_group_interface(
    doc: dict[str, Any],
    workflow_id: str,
    inputs: dict[str, Any],
    outputs: dict[str, Any],
    *,
    now: str,
) -> dict[str, Any]:
    """``doc`` brought in line with the current interface of the workflow ``workflow_id`` it embeds.

    The node-group sync rule (docs/projects.md):

    1. ``referencedWorkflows`` lists every workflow the NodeGroup nodes embed;
    2. a NodeGroup node embedding ``workflow_id`` that carries an interface snapshot
       (``data.groupInterface``) gets ``{"inputs": inputs, "outputs": outputs}``;
    3. edges into such a node through an input slot the workflow no longer has, or out of it
       through a missing output slot, are removed (as the editor does when a group's interface
       changes), together with their ids in ``inputConnectionOrders`` and the node's own
       ``inputValues``/``inputConnectionOrders`` entries for removed inputs;
    4. ``updatedAt`` becomes ``now`` if anything changed.

    Returns ``doc`` itself when nothing changed, else a changed deep copy.
    """
    out = copy.deepcopy(doc)
    group_ids: set[str] = set()
    for node in out.get("nodes") or ():
        if group_target(node) != workflow_id:
            continue
        group_ids.add(node["id"])
        data = node.get("data")
        if isinstance(data, dict) and "groupInterface" in data:
            data["groupInterface"] = {"inputs": copy.deepcopy(inputs), "outputs": copy.deepcopy(outputs)}
        for key in ("inputValues", "inputConnectionOrders"):
            values = node.get(key)
            if isinstance(values, dict):
                for slot in [s for s in values if s not in inputs]:
                    del values[slot]

    removed: set[str] = set()
    kept: list[Any] = []
    for edge in out.get("edges") or ():
        if isinstance(edge, dict):
            into = edge.get("target") in group_ids and _slot_key(edge.get("targetHandle")) not in inputs
            out_of = edge.get("source") in group_ids and _slot_key(edge.get("sourceHandle")) not in outputs
            if into or out_of:
                removed.add(str(edge.get("id")))
                continue
        kept.append(edge)
    if removed:
        out["edges"] = kept
        for node in out.get("nodes") or ():
            orders = node.get("inputConnectionOrders") if isinstance(node, dict) else None
            if isinstance(orders, dict):
                for slot, ids in orders.items():
                    if isinstance(ids, list):
                        orders[slot] = [i for i in ids if i not in removed]

    normalise_references(out)
    if out == doc:
        return doc
    out["updatedAt"] = now
    return out


def _interface(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


async def sync_group_users(store: ProjectStore, user_id: str, project_id: str, saved: dict[str, Any]) -> list[str]:
    """Apply ``saved``'s interface to every workflow of the project embedding it; returns the ids
    of the workflows that changed. A referrer that cannot be updated is logged and skipped: the
    save itself has already succeeded."""
    workflow_id = saved["id"]
    inputs, outputs = _interface(saved, "interfaceInputs"), _interface(saved, "interfaceOutputs")
    changed: list[str] = []
    for summary in await store.list_workflows(user_id, project_id):
        if summary.id == workflow_id or workflow_id not in summary.referenced_workflows:
            continue
        now = utc_now_iso()
        try:
            before, after = await store.update_workflow(
                user_id,
                project_id,
                summary.id,
                lambda doc: apply_group_interface(doc, workflow_id, inputs, outputs, now=now),
            )
        except (ProjectStoreError, UnsafeName, OSError) as exc:
            log.warning("node-group sync of %s in %s/%s skipped: %s", summary.id, user_id, project_id, exc)
            continue
        if after != before:
            changed.append(summary.id)
    return changed
