"""The editor's project metadata (``project.json``) as this plugin's routes send and accept it.

Wire formats of ``/api/projects`` only, so they live with the routes; the storage documents and
rules every backend shares stay in the kernel (:mod:`comfytavern.storage.projects`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from comfytavern.storage.projects import normalise_timestamp

__all__ = ["PreferredView", "ProjectCreate", "ProjectMetadata", "ProjectUpdate", "project_view"]


PreferredView = Literal["editor", "custom"]


class ProjectMetadata(msgspec.Struct, kw_only=True, rename="camel"):
    """``project.json`` as the editor's zod ``ProjectMetadataSchema`` accepts it: UTC ``Z``
    timestamps and optional fields absent (never ``null``)."""

    id: str
    name: str
    description: str | UnsetType = UNSET
    version: str
    created_at: str
    updated_at: str
    template_used: str | UnsetType = UNSET
    preferred_view: PreferredView = "editor"
    schema_version: str
    panels: list[dict[str, Any]] | UnsetType = UNSET
    enable_chat_page: bool | UnsetType = UNSET
    custom_metadata: dict[str, Any] | UnsetType = UNSET


class ProjectCreate(msgspec.Struct, kw_only=True, rename="camel"):
    """Body of ``POST /api/projects`` (the editor sends ``{"name": ...}``)."""

    name: Annotated[str, Meta(min_length=1)]
    description: str | UnsetType = UNSET
    template_used: str | UnsetType = UNSET
    preferred_view: PreferredView | UnsetType = UNSET
    enable_chat_page: bool | UnsetType = UNSET
    custom_metadata: dict[str, Any] | UnsetType = UNSET


class ProjectUpdate(msgspec.Struct, kw_only=True, rename="camel"):
    """Body of ``PUT /api/projects/{id}[/metadata]``: a partial update. ``id`` may be echoed but
    must match; ``createdAt``/``updatedAt``/``version``/``schemaVersion`` are server-managed and
    ignored; unknown keys are ignored."""

    id: str | UnsetType = UNSET
    name: Annotated[str, Meta(min_length=1)] | UnsetType = UNSET
    description: str | UnsetType = UNSET
    template_used: str | UnsetType = UNSET
    preferred_view: PreferredView | UnsetType = UNSET
    panels: list[dict[str, Any]] | UnsetType = UNSET
    enable_chat_page: bool | UnsetType = UNSET
    custom_metadata: dict[str, Any] | UnsetType = UNSET


def project_view(doc: dict[str, Any], project_id: str, *, fallback_time: str, version: str) -> ProjectMetadata:
    """The metadata the editor will accept, built leniently from a stored ``project.json``.

    The id is the folder name; missing or malformed fields get safe values (``name`` = id,
    timestamps = ``fallback_time``, versions = ``version``); malformed optional fields are dropped.
    """

    def text(key: str) -> str | UnsetType:
        value = doc.get(key)
        return value if isinstance(value, str) else UNSET

    created = normalise_timestamp(doc.get("createdAt")) or fallback_time
    updated = normalise_timestamp(doc.get("updatedAt")) or created
    view = doc.get("preferredView")
    panels = doc.get("panels")
    chat = doc.get("enableChatPage")
    custom = doc.get("customMetadata")
    name = doc.get("name")
    return ProjectMetadata(
        id=project_id,
        name=name if isinstance(name, str) and name else project_id,
        description=text("description"),
        version=text("version") or version,
        created_at=created,
        updated_at=updated,
        template_used=text("templateUsed"),
        preferred_view=view if view in ("editor", "custom") else "editor",
        schema_version=text("schemaVersion") or version,
        panels=panels if isinstance(panels, list) and all(isinstance(p, dict) for p in panels) else UNSET,
        enable_chat_page=chat if isinstance(chat, bool) else UNSET,
        custom_metadata=custom if isinstance(custom, dict) else UNSET,
    )
