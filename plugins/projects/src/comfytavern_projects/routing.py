"""Routes that match the raw request path one segment at a time.

Starlette matches the *decoded* path, so ``/api/projects/..%2F..%2Fx/metadata`` would not match
``/api/projects/{projectId}/metadata`` at all and would fall through as a generic 404. Matching the
raw path instead gives every id exactly one percent-decoding (never two, unlike the original) and
lets the handler reject an id that contains a separator, ``..`` or NUL with a clear 400.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from comfytavern import route

__all__ = ["SegmentRoute", "raw_segments", "segment_route"]


def raw_segments(scope: Scope) -> list[str]:
    """The request path split on ``/`` *before* decoding, each segment decoded once.

    Bytes that are not UTF-8 become lone surrogates, which id validation rejects.
    """
    raw = scope.get("raw_path")
    if raw is None:
        raw = scope["path"].encode("utf-8")
    root = scope.get("root_path", "").encode("utf-8")
    if root and raw.startswith(root):
        raw = raw[len(root) :]
    return [unquote_to_bytes(part).decode("utf-8", "surrogateescape") for part in raw.split(b"/")[1:]]


class SegmentRoute(Route):
    """A :class:`~starlette.routing.Route` whose ``{param}`` segments are matched on the raw path."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self._template: list[tuple[bool, str]] = [
            (part.startswith("{"), part.strip("{}").split(":", 1)[0]) for part in path.strip("/").split("/")
        ]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        segments = raw_segments(scope)
        if len(segments) == len(self._template) + 1 and segments[-1] == "":
            segments.pop()  # tolerate one trailing slash
        if len(segments) != len(self._template):
            return Match.NONE, {}
        params: dict[str, str] = {}
        for (is_param, text), segment in zip(self._template, segments, strict=True):
            if is_param:
                if not segment:
                    return Match.NONE, {}
                params[text] = segment
            elif segment != text:
                return Match.NONE, {}
        path_params = dict(scope.get("path_params", {}))
        path_params.update(params)
        child = {"endpoint": self.endpoint, "path_params": path_params}
        if self.methods and scope["method"] not in self.methods:
            return Match.PARTIAL, child
        return Match.FULL, child


def segment_route(
    path: str,
    endpoint: Callable[[Request], Awaitable[Response]],
    *,
    methods: Sequence[str],
    **doc_fields: Any,
) -> SegmentRoute:
    """Like :func:`comfytavern.route` (same access rule and documentation), raw-segment matched."""
    base = route(path, endpoint, methods=methods, **doc_fields)
    seg = SegmentRoute(path, base.endpoint, methods=list(methods), name=base.name)
    seg.doc = base.doc  # type: ignore[attr-defined]
    return seg
