"""Core LLM nodes: OpenAI-compatible chat (streaming and batch), API settings, chat history.

Nodes (namespace ``core``): ``APISettings``, ``History``, ``MergeHistory``, ``OpenAIChat``,
``OpenAI``, ``GenericLlmRequest``. Operator settings live in ``plugins.settings.llm`` (see
``docs/nodes-llm.md``).
"""

from __future__ import annotations

from comfytavern import Node, hookimpl
from comfytavern.services import CONFIG, CREDENTIALS, ServiceUse, uses
from comfytavern_nodes_llm.node_api_settings import api_settings
from comfytavern_nodes_llm.node_generic import generic_llm_request
from comfytavern_nodes_llm.node_history import history, merge_history
from comfytavern_nodes_llm.node_openai import openai, openai_chat
from comfytavern_nodes_llm.settings import SETTINGS_KEY, LlmSettings

__all__ = ["NAMESPACE", "NODES", "SETTINGS", "register_nodes", "register_services"]

NAMESPACE = "core"

NODES: tuple[Node, ...] = (api_settings, history, merge_history, openai_chat, openai, generic_llm_request)

#: ``plugins.settings.llm`` is checked against this by ``comfytavern check-config``.
SETTINGS = (SETTINGS_KEY, LlmSettings)


@hookimpl
def register_nodes() -> list[Node]:
    return list(NODES)


@hookimpl
def register_services() -> list[ServiceUse]:
    return [uses(CONFIG), uses(CREDENTIALS)]
