"""Node-group sync: after a workflow is saved, the workflows that embed it as a NodeGroup are
brought in line with its interface (the rule is :func:`apply_group_interface`, docs/projects.md).

It runs before the save is answered, each referrer rewritten under the project's lock, so a client
that reloads a referrer right after the save sees the result; it is idempotent, so a sync cut
short by a crash is completed by the next save of the same workflow.
"""

from __future__ import annotations

import logging
from typing import Any

from comfytavern.safety import UnsafeName
from comfytavern.storage.projects import (
    ProjectStore,
    ProjectStoreError,
    apply_group_interface,
    utc_now_iso,
)

__all__ = ["sync_group_users"]

log = logging.getLogger("comfytavern.projects")


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
