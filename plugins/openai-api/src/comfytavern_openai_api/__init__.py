"""Plugin ``openai-api``: stored workflows served as OpenAI-compatible chat models under ``/v1``.

A workflow whose interface has an input ``messages`` and an output ``reply`` is a model with
the id ``<projectId>/<workflowId>``: ``GET /v1/models`` lists the caller's, and
``POST /v1/chat/completions`` runs one (streaming chunk by chunk as the workflow produces the
reply), so SillyTavern, Open WebUI or any OpenAI SDK can use a ComfyTavern pipeline as its model.
It uses kernel services only (the scheduler, the event hub, the projects storage). Settings:
``plugins.settings.openai-api``. See ``docs/openai-api.md``.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from comfytavern import ServiceUse, hookimpl, requires
from comfytavern.services import SCHEDULER
from comfytavern_openai_api.routes import openai_routes
from comfytavern_openai_api.settings import OpenAIApiSettings

name = "openai-api"
SETTINGS_KEY = "openai-api"


@hookimpl
def register_services() -> list[ServiceUse]:
    return [requires(SCHEDULER)]


@hookimpl
def register_routes(kernel: Any) -> list[BaseRoute]:
    return openai_routes(kernel, kernel.plugin_settings(SETTINGS_KEY, OpenAIApiSettings))
