"""The character library plugin: SillyTavern cards (V1/V2/V3, PNG or JSON) per user.

Routes under ``/api/characters`` (scope group ``characters``); settings under
``plugins.settings.characters`` (:class:`comfytavern_cards.CardLibrarySettings`). The library
object is also published as the ``CHARACTERS`` service (``comfytavern.services``).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from comfytavern import ServiceUse, hookimpl, provides
from comfytavern.services import CHARACTERS
from comfytavern_cards import SETTINGS_KEY, CardLibrarySettings
from comfytavern_characters.library import CharacterLibrary
from comfytavern_characters.routes import build_routes

__all__ = ["CharacterLibrary", "register_routes", "register_services"]


@hookimpl
def register_services() -> list[ServiceUse]:
    return [provides(CHARACTERS)]


@hookimpl
def register_scope_groups() -> list[str]:
    return ["characters"]


@hookimpl
def register_routes(kernel: Any) -> list[BaseRoute]:
    settings = kernel.plugin_settings(SETTINGS_KEY, CardLibrarySettings)
    library = kernel.services.lookup(CHARACTERS)
    if not isinstance(library, CharacterLibrary):
        library = CharacterLibrary(kernel.config, settings)
        kernel.services.provide(CHARACTERS, library)
    return build_routes(library)
