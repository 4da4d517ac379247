"""The translations between the two editors' wire formats, and the HTTP boundary that applies them.

The server speaks the later editor's dialect (``2025-10``) everywhere inside. For the seed-era
editor (``seed-2025-06``):

- ``GET /api/auth/current``: ``mode`` ``SingleUser`` becomes ``LocalNoPassword`` (or
  ``LocalWithPassword`` when a password is required), ``MultiUser`` becomes ``MultiUserShared``;
- ``GET /api/nodes``: a stream slot (``isStream: true``) is sent as ``dataFlowType: "STREAM"``
  without ``isStream``, and ``config.suggestions`` as plain values instead of ``{value, label}``;
- WebSocket: ``SYSTEM_QUEUE_UPDATE`` and the synthetic ``NODE_YIELD`` "Stream ended" chunk that
  follows every batch node are not sent (that editor has neither).

Input is never translated: the engine accepts both forms (``STREAM`` or ``isStream``) whatever
the dialect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from comfytavern.config import EDITOR_DIALECT_LATER, EDITOR_DIALECT_SEED, EDITOR_DIALECTS
from comfytavern.services import WsEventTranslator

if TYPE_CHECKING:
    from comfytavern.kernel import Kernel

__all__ = [
    "AUTO",
    "CHOICES",
    "DIALECTS",
    "LATER",
    "SEED",
    "Dialect",
    "DialectMiddleware",
    "resolve_dialect",
]

log = logging.getLogger("comfytavern.editor_dialect")

SEED = EDITOR_DIALECT_SEED
LATER = EDITOR_DIALECT_LATER
AUTO = "auto"
#: Every dialect the server can speak; the first is the native one.
DIALECTS = (LATER, SEED)
#: Valid values of ``editor.dialect`` (the kernel's configuration checks them).
CHOICES = EDITOR_DIALECTS

#: The chunk the engine sends after every batch node (the later backend's "UI compatibility").
SYNTHETIC_FINISH = {"type": "finish_reason_chunk", "content": "Stream ended"}
_SEED_MODES = {"MultiUser": "MultiUserShared"}
_SLOT_GROUPS = ("inputs", "outputs", "configSchema")

WsTranslator = WsEventTranslator


# -- translations (seed era) -------------------------------------------------------------------
def _seed_auth_context(body: Any) -> Any:
    if isinstance(body, dict):
        mode = body.get("mode")
        if mode == "SingleUser":
            body["mode"] = "LocalWithPassword" if body.get("accessPasswordRequired") else "LocalNoPassword"
        elif mode in _SEED_MODES:
            body["mode"] = _SEED_MODES[mode]
    return body


def _seed_slot(slot: Any) -> None:
    if not isinstance(slot, dict):
        return
    if slot.pop("isStream", False):
        slot["dataFlowType"] = "STREAM"
    config = slot.get("config")
    if isinstance(config, dict) and isinstance(config.get("suggestions"), list):
        config["suggestions"] = [
            s["value"] if isinstance(s, dict) and "value" in s else s for s in config["suggestions"]
        ]


def _seed_slots(holder: Any) -> None:
    if not isinstance(holder, dict):
        return
    for group in _SLOT_GROUPS:
        slots = holder.get(group)
        if isinstance(slots, dict):
            for slot in slots.values():
                _seed_slot(slot)


def _seed_node_definitions(body: Any) -> Any:
    if isinstance(body, list):
        for definition in body:
            _seed_slots(definition)
            modes = definition.get("modes") if isinstance(definition, dict) else None
            if isinstance(modes, dict):
                for mode in modes.values():
                    _seed_slots(mode)
    return body


def _seed_ws(type_: str, payload: Any) -> dict[str, Any] | None:
    if type_ == "SYSTEM_QUEUE_UPDATE":
        return None
    if (
        type_ == "NODE_YIELD"
        and isinstance(payload, dict)
        and payload.get("isLastChunk") is True
        and payload.get("yieldedContent") == SYNTHETIC_FINISH
    ):
        return None
    return {"type": type_, "payload": payload}


#: Route path -> body translation, per non-native dialect.
_HTTP: dict[str, dict[str, Callable[[Any], Any]]] = {
    SEED: {"/api/auth/current": _seed_auth_context, "/api/nodes": _seed_node_definitions},
}
_WS: dict[str, WsTranslator] = {SEED: _seed_ws}


@dataclass(frozen=True)
class Dialect:
    """The dialect in force, and why (``reason`` is logged at start-up)."""

    name: str
    reason: str = ""

    @property
    def native(self) -> bool:
        return self.name == LATER

    def http_translation(self, path: str) -> Callable[[Any], Any] | None:
        """The body translation for a GET of ``path``, or ``None`` to send it unchanged."""
        return _HTTP.get(self.name, {}).get(path)

    def ws_translator(self) -> WsTranslator | None:
        """``(type, payload) -> message | None`` (``None``: not sent), or ``None`` if native."""
        return _WS.get(self.name)

    # Direct helpers (tests, tools): the same functions the boundaries apply.
    def auth_context(self, body: Any) -> Any:
        fn = self.http_translation("/api/auth/current")
        return fn(body) if fn else body

    def node_definitions(self, body: Any) -> Any:
        fn = self.http_translation("/api/nodes")
        return fn(body) if fn else body


def resolve_dialect(kernel: Kernel) -> Dialect:
    """``editor.dialect``, or for ``auto`` the first plugin that recognises its build."""
    configured = kernel.config.editor.dialect
    if configured != AUTO:
        return Dialect(configured, "editor.dialect")
    for info, found in kernel.call_each("detect_editor_dialect", kernel=kernel):
        if found is None:
            continue
        if found not in DIALECTS:
            log.warning("plugin %s named an unknown editor dialect %r; ignored", info.name, found)
            continue
        return Dialect(found, f"auto: recognised by plugin {info.name}")
    return Dialect(LATER, "auto: no recognised editor build")


# -- the HTTP boundary -----------------------------------------------------------------------
class DialectMiddleware:
    """Rewrite the JSON bodies :meth:`Dialect.http_translation` names (GET, status 200).

    A pass-through in the native dialect. Translated bodies carrying an ``ETag`` (the node
    listing) are cached per tag, so a snapshot is translated once.
    """

    def __init__(self, app: ASGIApp, *, dialect: Dialect) -> None:
        self.app = app
        self.dialect = dialect
        self._cache: dict[tuple[str, str, bytes], bytes] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        dialect = self.dialect
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        translate = None if dialect.native else dialect.http_translation(path.rstrip("/") or "/")
        if translate is None:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                if message["status"] != 200:
                    await send(message)
                return
            if message["type"] != "http.response.body" or start is None or start["status"] != 200:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = self._translate(dialect.name, path, start, b"".join(chunks), translate)
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffered)

    def _translate(
        self, name: str, path: str, start: Message, body: bytes, translate: Callable[[Any], Any]
    ) -> bytes:
        headers = dict(start["headers"])
        if b"json" not in headers.get(b"content-type", b""):
            return body
        etag = headers.get(b"etag")
        key = (name, path, etag) if etag else None
        if key is not None and key in self._cache:
            return self._cache[key]
        try:
            out = msgspec.json.encode(translate(msgspec.json.decode(body)))
        except msgspec.DecodeError:
            return body
        if key is not None:
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = out
        return out
