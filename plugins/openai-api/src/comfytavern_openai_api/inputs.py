"""An OpenAI chat request as the interface inputs of a chat-model workflow.

- ``messages`` becomes the message list the LLM nodes accept: compact JSON text (what the
  ``ChatHistory`` slots carry) unless the workflow's ``messages`` input is an ``ARRAY``, which
  gets the list itself. Content given as a list of text parts becomes one string (parts joined
  with a newline); a list with other parts (images...) is passed on as it is.
- ``temperature``, ``top_p``, ``max_tokens`` (or ``max_completion_tokens``), ``seed``, ``stop``,
  ``presence_penalty``, ``frequency_penalty`` and ``stream`` go to interface inputs of the same
  key, when the workflow has one; a ``STRING`` input gets the value as text (JSON for a list),
  an ``ARRAY`` input a one-item list for a single ``stop`` string.
- Everything else in the request is ignored.
"""

from __future__ import annotations

import json
from typing import Any

from comfytavern_openai_api.catalog import INPUT_KEY
from comfytavern_openai_api.errors import OpenAIError
from comfytavern_openai_api.wire import ChatCompletionRequest, ChatMessage
from comfytavern_stored_runs import interface_slots

__all__ = ["MAPPED_FIELDS", "ROLES", "normalise_messages", "workflow_inputs"]

#: Roles the LLM nodes accept.
ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
#: Request fields passed to an interface input of the same key when the workflow has one.
MAPPED_FIELDS = ("temperature", "top_p", "max_tokens", "seed", "stop", "presence_penalty", "frequency_penalty", "stream")


def _content(value: Any, where: str) -> Any:
    if value is None or isinstance(value, str):
        return value
    texts: list[str] = []
    only_text = True
    for i, part in enumerate(value):
        kind = part.get("type")
        if not isinstance(kind, str):
            raise OpenAIError.bad_request(f"{where}.content[{i}] has no 'type'", param=f"{where}.content")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise OpenAIError.bad_request(f"{where}.content[{i}].text must be a string", param=f"{where}.content")
            texts.append(text)
        else:
            only_text = False
    return "\n".join(texts) if only_text else value


def normalise_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The request's messages as plain dicts the LLM nodes accept (400 for what they cannot)."""
    if not messages:
        raise OpenAIError.bad_request("messages must contain at least one message", param="messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message.role not in ROLES:
            raise OpenAIError.bad_request(
                f"{where}.role is {message.role!r}; expected one of {', '.join(sorted(ROLES))}", param=f"{where}.role"
            )
        item: dict[str, Any] = {"role": message.role}
        content = _content(message.content, where)
        if content is None and not message.tool_calls:
            content = ""
        if content is not None:
            item["content"] = content
        for key in ("name", "tool_calls", "tool_call_id"):
            value = getattr(message, key)
            if value is not None:
                item[key] = value
        out.append(item)
    return out


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def workflow_inputs(request: ChatCompletionRequest, doc: dict[str, Any]) -> dict[str, Any]:
    """The interface input values for this request and workflow."""
    slots, _ = interface_slots(doc)
    messages = normalise_messages(request.messages)
    kind = slots[INPUT_KEY].get("dataFlowType")
    values: dict[str, Any] = {INPUT_KEY: messages if kind == "ARRAY" else _as_text(messages)}
    given = {field: getattr(request, field) for field in MAPPED_FIELDS}
    if given["max_tokens"] is None:
        given["max_tokens"] = request.max_completion_tokens
    for field, value in given.items():
        slot = slots.get(field)
        if slot is None or value is None:
            continue
        kind = slot.get("dataFlowType")
        if kind == "STRING":
            value = _as_text(value)
        elif kind == "ARRAY" and isinstance(value, str):
            value = [value]
        values[field] = value
    return values
