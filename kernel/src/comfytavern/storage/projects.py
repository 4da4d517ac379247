"""Projects and workflows: the storage Protocol, the document shapes, and the pure rules shared by
every backend and every route plugin (ids, timestamps, node-group references).

Documents are stored as plain ``dict`` objects so that fields the editor sends and this server
does not know about survive a round trip untouched. The msgspec Structs below describe (and
validate) the fields the server relies on; they are never used to re-encode a stored workflow.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, runtime_checkable

import msgspec
from msgspec import UNSET, Meta, UnsetType

from comfytavern.safety import UnsafeName, check_name

__all__ = [
    "AlreadyExists",
    "GROUP_NODE_TYPE",
    "InvalidId",
    "PreviewTarget",
    "ProjectNotFound",
    "ProjectStore",
    "ProjectStoreError",
    "Position",
    "Viewport",
    "WorkflowChange",
    "WorkflowEdge",
    "WorkflowNode",
    "WorkflowNotFound",
    "WorkflowObject",
    "WorkflowSummary",
    "check_id",
    "derive_id",
    "group_references",
    "group_target",
    "normalise_timestamp",
    "summarise_workflow",
    "utc_now_iso",
    "workflow_filename",
]

#: The node type that embeds another workflow of the same project (named here only; the engine
#: and the contracts import it).
GROUP_NODE_TYPE = "core:NodeGroup"


# -- errors ------------------------------------------------------------------------------------
class ProjectStoreError(Exception):
    """Base class of the errors a :class:`ProjectStore` raises on purpose."""


class ProjectNotFound(ProjectStoreError):
    """The project does not exist for this user (routes answer 404)."""


class WorkflowNotFound(ProjectStoreError):
    """The workflow does not exist in this project (routes answer 404)."""


class AlreadyExists(ProjectStoreError):
    """A project id, workflow id or workflow file name is taken (routes answer 409)."""


class InvalidId(UnsafeName):
    """An id or name that can never name a stored object (routes answer 400)."""


# -- ids and names -----------------------------------------------------------------------------
#: Characters that are harmless on POSIX but not portable; a *name* may contain them and its
#: derived id gets ``_`` instead. Separators, control characters and NUL are never replaced.
_UNPORTABLE = str.maketrans({c: "_" for c in ':*?"<>|'})


def check_id(value: Any, *, what: str = "id") -> str:
    """``value`` if it can name a folder or file as is, else :class:`InvalidId`.

    The kernel's :func:`~comfytavern.safety.check_name` rules (no separators, NUL, control
    characters, ``.``/``..``, leading dot, reserved device names, at most 200 UTF-8 bytes), plus
    no lone surrogates (what undecodable percent-escapes become).
    """
    if isinstance(value, str) and any(unicodedata.category(c) == "Cs" for c in value):
        # Checked first: check_name would fail on encoding them rather than reject them.
        raise InvalidId(f"{what} is not valid UTF-8")
    try:
        checked = check_name(value, what=what)
    except InvalidId:
        raise
    except UnsafeName as exc:
        raise InvalidId(str(exc)) from None
    if checked != value:
        # NFC changed it: accept the canonical form only, so one object has one spelling.
        raise InvalidId(f"{what} must be in Unicode NFC form")
    return checked


def derive_id(name: str, *, what: str = "name") -> str:
    """The readable id (or file stem) derived from a display name.

    Surrounding whitespace is dropped and ``: * ? " < > |`` become ``_``; anything else that
    could not name a file (separators, NUL, ``..``, ``CON``, absurd lengths...) raises
    :class:`InvalidId` instead of being rewritten into something that could alias another object.
    """
    if not isinstance(name, str):
        raise InvalidId(f"{what} must be a string")
    stripped = unicodedata.normalize("NFC", name).strip()
    if not stripped:
        raise InvalidId(f"{what} must not be blank")
    return check_id(stripped.translate(_UNPORTABLE), what=what)


def workflow_filename(name: str) -> str:
    """File name of a workflow: derived from its display name, plus ``.json``."""
    return derive_id(name, what="workflow name") + ".json"


# -- timestamps --------------------------------------------------------------------------------
def utc_now_iso() -> str:
    """Now as UTC ISO-8601 with milliseconds and a trailing ``Z`` (what the editor's zod accepts)."""
    return _format(datetime.now(UTC))


def _format(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalise_timestamp(value: Any) -> str | None:
    """``value`` as a UTC ISO-8601 string ending in ``Z`` if it is an ISO-8601 time, else ``None``.

    A value already in that form passes unchanged (any sub-second precision); naive times are
    taken as UTC and offsets are converted.
    """
    if not isinstance(value, str):
        return None
    if _UTC_Z.fullmatch(value):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _format(moment)


_UTC_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


# -- documents ---------------------------------------------------------------------------------
class Position(msgspec.Struct):
    x: float
    y: float


class Viewport(msgspec.Struct):
    x: float
    y: float
    zoom: float


class WorkflowNode(msgspec.Struct, kw_only=True, rename="camel"):
    """A stored node; only the fields the server reads are typed, the rest are kept as sent."""

    id: str
    type: str
    position: Position
    config_values: dict[str, Any] | None = None
    input_values: dict[str, Any] | None = None
    input_connection_orders: dict[str, list[str]] | None = None
    data: dict[str, Any] | None = None


class WorkflowEdge(msgspec.Struct, kw_only=True, rename="camel"):
    id: str
    source: str
    target: str
    source_handle: str | None = None
    target_handle: str | None = None


class PreviewTarget(msgspec.Struct, rename="camel"):
    node_id: str
    slot_key: str


class WorkflowObject(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """What the editor saves (POST/PUT) and loads (GET). Unknown fields are allowed and kept.

    ``createdAt``, ``updatedAt`` are set by the server; ``id`` is the persistent identity.
    """

    name: Annotated[str, Meta(min_length=1)]
    nodes: list[WorkflowNode]
    edges: list[WorkflowEdge]
    viewport: Viewport
    id: str | UnsetType = UNSET
    description: str | None | UnsetType = UNSET
    interface_inputs: dict[str, dict[str, Any]] | UnsetType = UNSET
    interface_outputs: dict[str, dict[str, Any]] | UnsetType = UNSET
    referenced_workflows: list[str] | UnsetType = UNSET
    preview_target: PreviewTarget | None | UnsetType = UNSET
    creation_method: str | None | UnsetType = UNSET
    version: str | None | UnsetType = UNSET
    created_at: str | None | UnsetType = UNSET
    updated_at: str | None | UnsetType = UNSET


class WorkflowSummary(msgspec.Struct, kw_only=True, rename="camel"):
    """One item of ``GET /api/projects/{id}/workflows``.

    ``referencedWorkflows`` is derived from the workflow's NodeGroup nodes (the truth), so the
    editor's reference counts are right even for files another tool wrote.
    """

    id: str
    name: str
    description: str | UnsetType = UNSET
    updated_at: str | UnsetType = UNSET
    creation_method: str | UnsetType = UNSET
    referenced_workflows: list[str] = msgspec.field(default_factory=list)


# -- node groups -------------------------------------------------------------------------------
def group_target(node: Any) -> str | None:
    """The workflow id a NodeGroup node embeds (``configValues``; legacy ``data``)."""
    if not isinstance(node, dict) or node.get("type") != GROUP_NODE_TYPE:
        return None
    for holder in (node.get("configValues"), node.get("data")):
        if isinstance(holder, dict):
            ref = holder.get("referencedWorkflowId")
            if isinstance(ref, str) and ref:
                return ref
    return None


def group_references(doc: dict[str, Any]) -> list[str]:
    """Ids of the workflows this workflow uses as NodeGroups, in first-use order."""
    seen: dict[str, None] = {}
    for node in doc.get("nodes") or ():
        ref = group_target(node)
        if ref is not None:
            seen.setdefault(ref, None)
    return list(seen)


def summarise_workflow(doc: Any) -> WorkflowSummary | None:
    """The list item for a stored workflow, or ``None`` if it lacks a string ``id``/``name``."""
    if not isinstance(doc, dict):
        return None
    wid, name = doc.get("id"), doc.get("name")
    if not isinstance(wid, str) or not wid or not isinstance(name, str):
        return None

    def text(key: str) -> str | UnsetType:
        value = doc.get(key)
        return value if isinstance(value, str) else UNSET

    return WorkflowSummary(
        id=wid,
        name=name,
        description=text("description"),
        updated_at=text("updatedAt"),
        creation_method=text("creationMethod"),
        referenced_workflows=group_references(doc),
    )


# -- the interface -----------------------------------------------------------------------------
#: Called under the store's lock with a private copy of the current document; returns the new one.
WorkflowChange = Callable[[dict[str, Any]], dict[str, Any]]


@runtime_checkable
class ProjectStore(Protocol):
    """Per-user projects and their workflows (``storage.projects`` selects the backend).

    Every method is scoped by ``user_id`` (always the authenticated principal's id). Ids are
    validated with :func:`check_id`; a backend raises :class:`InvalidId` for one that can never
    be valid (``get_workflow`` answers ``None`` instead). Writes to one project are serialised
    and atomic: a reader sees the old or the new document, never a torn one.
    """

    async def list_projects(self, user_id: str) -> list[dict[str, Any]]:
        """Every readable ``project.json`` of the user, ``"id"`` forced to the project id."""
        ...

    async def get_project(self, user_id: str, project_id: str) -> dict[str, Any] | None: ...

    async def create_project(self, user_id: str, project_id: str, doc: dict[str, Any]) -> None:
        """Store a new project; :class:`AlreadyExists` if the id is taken."""
        ...

    async def update_project(
        self, user_id: str, project_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """Read-modify-write ``project.json`` under the project's lock; returns the new document."""
        ...

    async def delete_project(self, user_id: str, project_id: str) -> None:
        """Move the project to the user's recycle bin; :class:`ProjectNotFound` if missing."""
        ...

    async def list_workflows(self, user_id: str, project_id: str) -> list[WorkflowSummary]:
        """Summaries of the project's workflows; :class:`ProjectNotFound` if the project is missing."""
        ...

    async def get_workflow(self, user_id: str, project_id: str, workflow_id: str) -> dict[str, Any] | None:
        """The stored workflow object as a plain dict, ``None`` when missing (or never valid)."""
        ...

    async def create_workflow(self, user_id: str, project_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Store ``doc`` (its ``id`` and ``name`` are set); :class:`AlreadyExists` when the id or the
        file name derived from the name is taken."""
        ...

    async def update_workflow(
        self, user_id: str, project_id: str, workflow_id: str, change: WorkflowChange
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Read-modify-write one workflow under the project's lock; returns ``(before, after)``.

        A new ``name`` moves the file (:class:`AlreadyExists` on a clash); the ``id`` may not
        change; an unchanged document is not rewritten.
        """
        ...

    async def delete_workflow(self, user_id: str, project_id: str, workflow_id: str) -> None:
        """Move the workflow's file to the user's recycle bin; :class:`WorkflowNotFound` if missing."""
        ...
