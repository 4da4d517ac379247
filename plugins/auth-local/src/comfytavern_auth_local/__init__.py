"""Auth mode ``local``: the single-user, no-password mode (the default).

Every connection is the administrator ``default_user``; nothing to log in to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute

from comfytavern import AuthMode, Principal, hookimpl

DEFAULT_USER_ID = "default_user"
DEFAULT_USERNAME = "本地用户"


class LocalAuth:
    name = "local"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.principal = Principal(
            id=DEFAULT_USER_ID,
            username=str(settings.get("username", DEFAULT_USERNAME)),
            is_admin=True,
            via="local",
        )

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        return self.principal

    def routes(self) -> Sequence[BaseRoute]:
        return []


@hookimpl
def register_auth_modes(kernel: Any) -> list[AuthMode]:
    return [AuthMode("local", factory=lambda kernel, settings: LocalAuth(settings), description=__doc__ or "")]
