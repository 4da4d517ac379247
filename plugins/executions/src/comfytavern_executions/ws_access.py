"""Who may do what over ``/ws``: service-key scopes per message and event, and the live sockets
that an ended credential closes.

The scopes are those of the HTTP route that does the same thing, so a key can do over the socket
exactly what it can do over HTTP (docs/websocket.md lists them per message).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from comfytavern.auth import Principal
from comfytavern.events import HubEvent
from comfytavern.revocation import Revocation

__all__ = ["MESSAGE_SCOPES", "LiveSockets", "event_scope", "live_sockets"]

#: The scope each client message needs, after the HTTP route doing the same.
MESSAGE_SCOPES: dict[str, str] = {
    "PROMPT_REQUEST": "runs:write",  # POST /api/prompt
    "INTERRUPT_REQUEST": "runs:write",  # POST /api/interrupt/{id}
    "SUBSCRIBE_PROMPT": "runs:read",  # GET /api/prompt/{id} (and its events)
    "UNSUBSCRIBE_PROMPT": "runs:read",
    "button_click": "runs:write",  # an action on a node of a workflow run from the editor
}

#: Run-less events that belong to another scope group than ``runs``.
_EVENT_SCOPES: dict[str, str] = {"NODES_RELOADED": "nodes:read"}


def event_scope(event: HubEvent) -> str:
    """The scope a run-less event (a broadcast, or one addressed to the user) needs.

    ``NODES_RELOADED`` is ``nodes:read`` (like ``GET /api/nodes``); every other one — the queue
    figures of ``SYSTEM_QUEUE_UPDATE`` (like ``GET /api/system_stats``) and events plugins address
    to a user — is ``runs:read``. Events of a run need no check here: a socket only watches runs it
    was allowed to submit or subscribe to.
    """
    return _EVENT_SCOPES.get(event.type, "runs:read")


class _Revocable(Protocol):
    user: Principal

    def revoke(self, reason: str) -> None: ...


class LiveSockets:
    """The open sockets of one server process by user id; listens to ``kernel.revocations``.

    One registry (and one listener) per process rather than one listener per socket, so an
    announcement looks at the sockets of one user, not at every socket.
    """

    def __init__(self) -> None:
        self._by_user: dict[str, set[_Revocable]] = {}

    def add(self, socket: _Revocable) -> Callable[[], None]:
        user_id = socket.user.id
        self._by_user.setdefault(user_id, set()).add(socket)

        def remove() -> None:
            sockets = self._by_user.get(user_id)
            if sockets is not None:
                sockets.discard(socket)
                if not sockets:
                    del self._by_user[user_id]

        return remove

    def _candidates(self, user_id: str | None) -> Iterable[_Revocable]:
        if user_id is not None:
            return tuple(self._by_user.get(user_id, ()))
        return tuple(s for sockets in self._by_user.values() for s in sockets)

    def on_revocation(self, revocation: Revocation, origin: str | None) -> None:
        """Close (4401) every socket whose credential ``revocation`` ended."""
        for socket in self._candidates(revocation.user_id):
            if revocation.covers(socket.user):
                socket.revoke(_REASONS[revocation.kind])

    def count(self) -> int:
        return sum(len(s) for s in self._by_user.values())


_REASONS = {
    "key": "the API key was revoked",
    "session": "the session ended (logged out)",
    "sessions": "the password changed; log in again",
    "user": "the account was deleted",
}


_by_kernel: weakref.WeakKeyDictionary[Any, LiveSockets] = weakref.WeakKeyDictionary()


def live_sockets(kernel: Any) -> LiveSockets:
    """The kernel's one registry, listening to ``kernel.revocations`` (routes may be built more
    than once per kernel: the app, the OpenAPI document, the CLI's scope list)."""
    found = _by_kernel.get(kernel)
    if found is None:
        found = _by_kernel[kernel] = LiveSockets()
        kernel.revocations.listen(found.on_revocation)
    return found
