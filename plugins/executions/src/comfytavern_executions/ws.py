"""The editor's WebSocket ``/ws``: exactly the original protocol, plus multi-run watching.

Each socket has one ordered, bounded outbox fed by (a) direct replies and (b) the event hub:
events of the runs this socket watches (its own submissions and explicit subscriptions),
broadcasts (``SYSTEM_QUEUE_UPDATE``, ``NODES_RELOADED``...) and run-less events addressed to its
user. The hub hands events over synchronously and never waits for the socket; a sender task per
socket encodes and writes them, so a slow client only grows its own outbox. When the outbox
exceeds ``ws_max_queue`` the socket is closed with 1013 and the client resyncs from
``GET /api/prompt/{id}``.

Access is the HTTP API's: every message needs the scope of the matching route
(:mod:`comfytavern_executions.ws_access`), and the credential the socket was opened with is
checked again before each message is acted on. When that credential ends (an announcement on
``kernel.revocations``: key deleted, logout, password change, account deleted) the socket is
closed with 4401 at once.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import anyio
import msgspec
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from comfytavern.auth import Principal, optional_principal, scope_refusal
from comfytavern.engine import PayloadError, SchedulerClosed, convert_payload, safe_encoder
from comfytavern.engine.payload import ExecutionPayload, decode_valid_payload
from comfytavern.engine.scheduler import Scheduler
from comfytavern.engine.transport import SEND_TEXT_FRAMES
from comfytavern.events import HubEvent
from comfytavern.http import MAX_JSON_DEPTH, _nesting_exceeds, decode_json, websocket_route
from comfytavern.revocation import reauthenticate
from comfytavern.services import SCHEDULER, WS_EVENT_TRANSLATOR
from comfytavern_executions.settings import ExecutionsSettings
from comfytavern_executions.ws_access import MESSAGE_SCOPES, event_scope, live_sockets
from comfytavern_executions.ws_fanout import Fanout, fanout_for

__all__ = ["websocket_routes"]

log = logging.getLogger("comfytavern.executions.ws")
#: At most this many queued events are written per direct send (the rest on the next turn).
_SEND_BATCH = 512

#: Close code for a socket that fell too far behind (RFC 6455 "try again later").
CLOSE_TOO_SLOW = 1013
#: Close code for a socket without a (still) valid identity.
CLOSE_UNAUTHENTICATED = 4401


class _Envelope(msgspec.Struct):
    type: str
    payload: Any = msgspec.UNSET


class _Head(msgspec.Struct):
    """The envelope with its payload left undecoded: a ``PROMPT_REQUEST``'s payload (the whole
    workflow) is then decoded once, straight into an ``ExecutionPayload``."""

    type: str
    payload: msgspec.Raw = msgspec.Raw(b"")


_head_decoder = msgspec.json.Decoder(_Head)


def _fast_prompt(text: str) -> ExecutionPayload | None:
    """The payload of a well-formed ``PROMPT_REQUEST``, else ``None`` (the general path then
    answers, with its exact error messages; it also refuses too deep nesting)."""
    raw = text.encode("utf-8", "surrogatepass")
    if _nesting_exceeds(raw, MAX_JSON_DEPTH):
        return None
    try:
        head = _head_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if head.type != "PROMPT_REQUEST" or not head.payload:
        return None
    return decode_valid_payload(head.payload, nesting_checked=True)


class _PromptRef(msgspec.Struct, rename="camel"):
    prompt_id: str


class _Watched(set[str]):
    """The runs a socket watches, mirrored in the kernel's :class:`Fanout` index (which hands
    each run's events to its watchers only)."""

    def __init__(self, fanout: Fanout, socket: Connection) -> None:
        super().__init__()
        self._fanout = fanout
        self._socket = socket

    def add(self, prompt_id: str) -> None:
        super().add(prompt_id)
        self._fanout.watch(prompt_id, self._socket)

    def discard(self, prompt_id: object) -> None:
        super().discard(prompt_id)
        if isinstance(prompt_id, str):
            self._fanout.unwatch(prompt_id, self._socket)

    def remove(self, prompt_id: object) -> None:
        if prompt_id not in self:
            raise KeyError(prompt_id)
        self.discard(prompt_id)

    def clear(self) -> None:
        for prompt_id in list(self):
            self.discard(prompt_id)


class Connection:
    """One WebSocket: its outbox, the runs it watches and its message handlers."""

    def __init__(self, websocket: WebSocket, user: Principal, kernel: Any, settings: ExecutionsSettings) -> None:
        self.websocket = websocket
        self.user = user
        #: Why the socket's credential ended (then the socket closes with 4401).
        self.revoked: str | None = None
        self.kernel = kernel
        self.max_queue = settings.ws_max_queue
        self.outbox: collections.deque[HubEvent | str] = collections.deque()
        self.overflowed = False
        self._wakeup: anyio.Event | None = None
        # The kernel's fanout (one hub subscriber for all sockets) pushes the events of the runs
        # this socket watches and offers it the run-less ones, synchronously, into this
        # socket's own ordered outbox (shared with direct replies).
        self.fanout = fanout_for(kernel)
        self.watched: set[str] = _Watched(self.fanout, self)
        self.fanout.add(self)

    # -- outbox -------------------------------------------------------------------------------
    def _offer(self, event: HubEvent) -> bool:
        if self.revoked is not None:
            return False
        prompt_id = event.prompt_id
        if prompt_id is not None:
            if prompt_id in self.watched:
                self._push(event)
        elif (event.owner_id is None or event.owner_id == self.user.id) and self.user.has_scope(event_scope(event)):
            self._push(event)
        return False

    def _push(self, item: HubEvent | str) -> None:
        if self.overflowed:
            return
        if len(self.outbox) >= self.max_queue:
            self.overflowed = True
            self.outbox.clear()
        else:
            self.outbox.append(item)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def reply(self, type_: str, payload: dict[str, Any]) -> None:
        self._push(safe_encoder.encode({"type": type_, "payload": payload}).decode())

    def error(self, message: str, details: Any = None, **extra: Any) -> None:
        payload: dict[str, Any] = {"message": message}
        if details is not None:
            payload["details"] = details
        payload.update({k: v for k, v in extra.items() if v is not None})
        self.reply("error", payload)

    def revoke(self, reason: str) -> None:
        """The credential ended: drop what is queued and close with 4401 (from any callback)."""
        if self.revoked is not None:
            return
        self.revoked = reason
        self.watched.clear()
        self.outbox.clear()
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    async def sender(self) -> None:
        send = self.websocket.send_text
        # Under ``comfytavern serve``: encoded run events go straight to the protocol's buffer,
        # every event queued since the last wake-up at once.
        try_send = self.websocket.scope.get("extensions", {}).get(SEND_TEXT_FRAMES)
        outbox = self.outbox
        encode = safe_encoder.encode
        # The connected editor's event translation (absent for the native dialect: events go as-is).
        translate = self.kernel.services.lookup(WS_EVENT_TRANSLATOR)
        while True:
            if not outbox:
                if self.revoked is not None:
                    await self.websocket.close(CLOSE_UNAUTHENTICATED, self.revoked)
                    return
                if self.overflowed:
                    await self.websocket.close(
                        CLOSE_TOO_SLOW, "event backlog overflowed; resync with GET /api/prompt/{id}"
                    )
                    return
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                continue
            item = outbox.popleft()
            if isinstance(item, str):
                await send(item)
            elif translate is None:
                # Run events come encoded once by the scheduler; the rest are encoded here.
                frames = [item.frame or encode({"type": item.type, "payload": item.payload})]
                while outbox and len(frames) < _SEND_BATCH:
                    event = outbox[0]
                    if isinstance(event, str):
                        break  # a reply of this socket's own: sent in order, by the general path
                    outbox.popleft()
                    frames.append(event.frame or encode({"type": event.type, "payload": event.payload}))
                if try_send is None or not try_send(frames):
                    for frame in frames:
                        await send(frame.decode())
            else:
                message = translate(item.type, item.payload)
                if message is not None:
                    await send(encode(message).decode())

    # -- inbound ------------------------------------------------------------------------------
    async def receiver(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                raw = message.get("bytes") or b""
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    self.error("binary frames are not supported; send JSON text frames")
                    continue
            await self.handle(text)

    async def handle(self, text: str) -> None:
        if self.revoked is not None:  # closing: nothing more is answered
            return
        prompt = _fast_prompt(text)
        if prompt is not None:
            try:
                if not await self._still_authenticated("PROMPT_REQUEST"):
                    return
                if scope_refusal(self.user, MESSAGE_SCOPES["PROMPT_REQUEST"]) is not None:
                    self._in_scope("PROMPT_REQUEST", msgspec.json.decode(text).get("payload"))
                    return
                await self._submit(prompt, _ids(prompt.metadata))
            except Exception as exc:  # noqa: BLE001 - a handler bug must not close the socket
                log.exception("WebSocket PROMPT_REQUEST handler failed")
                self.error(f"Error processing message: {exc}")
            return
        try:
            raw = decode_json(text, what="WebSocket message")
        except msgspec.DecodeError as exc:  # JsonTooDeep included: the socket stays open
            self.error("message is not valid JSON", {"reason": str(exc), "found": text[:200]})
            return
        try:
            envelope = msgspec.convert(raw, _Envelope)
        except msgspec.ValidationError as exc:
            self.error("message must be an object {type, payload}", {"reason": str(exc)})
            return
        handler = _HANDLERS.get(envelope.type)
        if handler is None:
            self.error(f"Unknown message type: {envelope.type}", {"type": envelope.type})
            return
        try:
            if not await self._still_authenticated(envelope.type):
                return
            if not self._in_scope(envelope.type, envelope.payload):
                return
            await handler(self, envelope.payload)
        except Exception as exc:  # noqa: BLE001 - a handler bug must not close the socket
            log.exception("WebSocket %s handler failed", envelope.type)
            self.error(f"Error processing message: {exc}")

    async def _still_authenticated(self, type_: str) -> bool:
        """Authenticate the handshake's credential again, as a new HTTP request would be.

        Catches what no announcement reached: a key revoked or a password set by another process
        (the CLI, another instance without a shared bus), an expired session, a deleted account.
        """
        if self.revoked is not None:
            return False
        fresh = await reauthenticate(self.kernel.auth, HTTPConnection(self.websocket.scope), self.user)
        if self.revoked is not None:
            return False
        if fresh is None:
            self.revoke("the session or API key is no longer valid")
            self.error("authentication required: the session or API key this socket was opened with is no longer valid",
                       {"status": 401, "type": type_})
            return False
        self.user = fresh
        return True

    def _in_scope(self, type_: str, payload: Any) -> bool:
        """The HTTP routes' scope rule (403 there; an ``error`` reply here, the socket stays open)."""
        scope = MESSAGE_SCOPES[type_]
        refusal = scope_refusal(self.user, scope)
        if refusal is None:
            return True
        ids: dict[str, Any] = {}
        if isinstance(payload, dict):
            metadata = payload.get("metadata")
            if isinstance(metadata, dict):
                ids = {"internalId": metadata.get("internalId"), "workflowId": metadata.get("workflowId")}
            prompt_id = payload.get("promptId")
            if isinstance(prompt_id, str):
                ids["promptId"] = prompt_id
        ids = {k: v for k, v in ids.items() if isinstance(v, str)}
        self.error(refusal, {"status": 403, "scope": scope, "type": type_}, **ids)
        return False

    @property
    def scheduler(self) -> Scheduler | None:
        return self.kernel.services.lookup(SCHEDULER)

    async def on_prompt(self, payload: Any) -> None:
        metadata = payload.get("metadata") if isinstance(payload, dict) else None
        ids = _ids(metadata if isinstance(metadata, dict) else {})
        if payload is msgspec.UNSET:
            self.error("PROMPT_REQUEST needs a payload", **ids)
            return
        try:
            execution_payload = convert_payload(payload)
        except PayloadError as exc:
            self.error(f"invalid PROMPT_REQUEST payload: {exc.details[0]['message']}", exc.details, **ids)
            return
        await self._submit(execution_payload, ids)

    async def _submit(self, execution_payload: ExecutionPayload, ids: dict[str, Any]) -> None:
        scheduler = self.scheduler
        if scheduler is None:
            self.error("the run scheduler is not running", **ids)
            return

        def accepted(prompt_id: str) -> None:
            self.watched.add(prompt_id)
            self.reply("PROMPT_ACCEPTED_RESPONSE", {"promptId": prompt_id})

        try:
            await scheduler.submit(
                execution_payload, self.user, source="websocket", on_accepted=accepted, reject_invalid=False
            )
        except SchedulerClosed as exc:
            self.error(str(exc), **ids)

    def _prompt_ref(self, payload: Any, what: str) -> str | None:
        try:
            return msgspec.convert(payload, _PromptRef).prompt_id
        except msgspec.ValidationError as exc:
            self.error(f"{what} needs a payload {{promptId}}", {"reason": str(exc)})
            return None

    async def on_interrupt(self, payload: Any) -> None:
        prompt_id = self._prompt_ref(payload, "INTERRUPT_REQUEST")
        scheduler = self.scheduler
        if prompt_id is None or scheduler is None:
            return
        if not await scheduler.interrupt(prompt_id, self.user, wait=0):
            self.error(f"Execution {prompt_id} not found in running or waiting queue, or already finished/interrupted.",
                       promptId=prompt_id)

    async def on_subscribe(self, payload: Any) -> None:
        prompt_id = self._prompt_ref(payload, "SUBSCRIBE_PROMPT")
        scheduler = self.scheduler
        if prompt_id is None or scheduler is None:
            return
        if prompt_id in self.watched:
            return
        replay = await scheduler.replay(prompt_id, self.user)
        if replay is None:
            self.error(f"Execution with promptId {prompt_id} not found.", promptId=prompt_id)
            return
        # ``replay`` of an active run returns without suspending, so adding the id right now
        # means no event is missed or repeated.
        for event in replay:
            self._push(event)
        # ``watchable``: active here, or queued/running on another instance (distributed mode).
        if scheduler.watchable(prompt_id, self.user):
            self.watched.add(prompt_id)

    async def on_unsubscribe(self, payload: Any) -> None:
        prompt_id = self._prompt_ref(payload, "UNSUBSCRIBE_PROMPT")
        if prompt_id is not None:
            self.watched.discard(prompt_id)

    async def on_button_click(self, payload: Any) -> None:
        # The editor sends it for button widgets; the original only logs it, and so do we.
        log.info("button_click from %s: %s", self.user.id, payload if isinstance(payload, dict) else type(payload).__name__)

    def close(self) -> None:
        self.watched.clear()
        self.fanout.remove(self)


def _ids(metadata: Any) -> dict[str, Any]:
    """The ids an error reply to a ``PROMPT_REQUEST`` echoes."""
    return {"internalId": metadata.get("internalId"), "workflowId": metadata.get("workflowId")}


_HANDLERS = {
    "PROMPT_REQUEST": Connection.on_prompt,
    "INTERRUPT_REQUEST": Connection.on_interrupt,
    "SUBSCRIBE_PROMPT": Connection.on_subscribe,
    "UNSUBSCRIBE_PROMPT": Connection.on_unsubscribe,
    "button_click": Connection.on_button_click,
}


def websocket_routes(kernel: Any, settings: ExecutionsSettings) -> list[BaseRoute]:
    live = live_sockets(kernel)

    async def endpoint(websocket: WebSocket) -> None:
        user = optional_principal(websocket)
        await websocket.accept()
        if user is None:
            await websocket.close(CLOSE_UNAUTHENTICATED, "authentication required")
            return
        connection = Connection(websocket, user, kernel, settings)
        forget = live.add(connection)
        try:
            async with anyio.create_task_group() as tg:

                async def sender() -> None:
                    try:
                        await connection.sender()
                    except (WebSocketDisconnect, RuntimeError, OSError):
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(sender)
                try:
                    await connection.receiver()
                except (WebSocketDisconnect, RuntimeError):
                    pass
                tg.cancel_scope.cancel()
        finally:
            forget()
            connection.close()

    return [
        websocket_route(
            "/ws",
            endpoint,
            summary="The editor's WebSocket: PROMPT_REQUEST, INTERRUPT_REQUEST, SUBSCRIBE_PROMPT and run events",
            auth="user",
            tags=["executions"],
        )
    ]
