"""Which stored workflows are chat models, and finding one by its model id.

A workflow is served as a model when its interface has an input with key ``messages`` and an
output with key ``reply``. Its model id is ``<projectId>/<workflowId>`` (neither id can contain
``/``). Only the caller's own projects are looked at, so another user's workflow is "not found".
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from comfytavern.auth import Principal
from comfytavern.safety import UnsafeName
from comfytavern.storage.projects import ProjectStore, ProjectStoreError, check_id
from comfytavern_openai_api.errors import OpenAIError
from comfytavern_openai_api.wire import ModelCard
from comfytavern_stored_runs import interface_slots

__all__ = ["INPUT_KEY", "OUTPUT_KEY", "is_chat_model", "list_models", "resolve_model"]

log = logging.getLogger("comfytavern.openai_api")

INPUT_KEY = "messages"
OUTPUT_KEY = "reply"


def is_chat_model(doc: dict[str, Any]) -> bool:
    inputs, outputs = interface_slots(doc)
    return INPUT_KEY in inputs and OUTPUT_KEY in outputs


def _created(doc: dict[str, Any]) -> int:
    """``createdAt`` (else ``updatedAt``) in seconds since the epoch; 0 when neither parses."""
    for key in ("createdAt", "updatedAt"):
        value = doc.get(key)
        if isinstance(value, str):
            try:
                return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
            except ValueError:
                continue
    return 0


def card(project_id: str, workflow_id: str, doc: dict[str, Any], user: Principal) -> ModelCard:
    return ModelCard(id=f"{project_id}/{workflow_id}", created=_created(doc), owned_by=user.id)


async def list_models(store: ProjectStore, user: Principal) -> list[ModelCard]:
    """Every chat-model workflow of the caller, by project then workflow id."""
    cards: list[ModelCard] = []
    for project in await store.list_projects(user.id):
        project_id = project.get("id")
        if not isinstance(project_id, str):
            continue
        try:
            summaries = await store.list_workflows(user.id, project_id)
        except (ProjectStoreError, UnsafeName) as exc:
            log.info("model list: project %r skipped: %s", project_id, exc)
            continue
        for summary in sorted(summaries, key=lambda s: s.id):
            doc = await store.get_workflow(user.id, project_id, summary.id)
            if doc is not None and is_chat_model(doc):
                cards.append(card(project_id, summary.id, doc, user))
    return sorted(cards, key=lambda c: c.id)


async def resolve_model(store: ProjectStore, user: Principal, model: str) -> tuple[str, str, dict[str, Any]]:
    """``(projectId, workflowId, stored workflow)`` for a model id, else 404 ``model_not_found``."""
    project_id, sep, workflow_id = model.partition("/")
    if not sep:
        raise OpenAIError.model_not_found(model)
    try:
        check_id(project_id, what="project id")
        check_id(workflow_id, what="workflow id")
    except UnsafeName:
        raise OpenAIError.model_not_found(model) from None
    doc = await store.get_workflow(user.id, project_id, workflow_id)
    if doc is None or not is_chat_model(doc):
        raise OpenAIError.model_not_found(model)
    return project_id, workflow_id, doc
