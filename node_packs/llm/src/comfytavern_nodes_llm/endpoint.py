"""Which endpoint an LLM node calls, and with which key.

Key resolution order (the first that yields a key wins):

1. the ``api_key`` typed into the ``APISettings`` node (or carried by an ``api_settings`` object);
2. the run owner's stored credential for the service name (``credential_service``, default
   ``openai``), via ``ctx.credential`` (the auth plugin's encrypted credential store);
3. ``OPENAI_API_KEY`` from the server environment, only when the node asks for it
   (``use_env_vars``) AND the operator allows it (``plugins.settings.llm.allow_env_keys``).

No key at all is allowed (local servers such as llama.cpp or Ollama need none): the request is
sent without ``Authorization`` and a 401 from the endpoint explains what to do.

The key never appears in a node output: :class:`ApiSettingsValue` is the dict the editor sees
(``api_key_set`` tells whether one was found) and carries the resolved :class:`Endpoint` as an
attribute, which JSON encoding (events, run history) does not include.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from comfytavern_nodes_llm.errors import LlmConfigError
from comfytavern_nodes_llm.lazy import lazy_import
from comfytavern_nodes_llm.settings import LlmSettings

if TYPE_CHECKING:
    import httpx
else:  # loaded when a request is made, not at server start (see .lazy)
    httpx = lazy_import("httpx")

__all__ = [
    "ENV_BASE_URL_VARS",
    "ENV_KEY_VAR",
    "ApiSettingsValue",
    "Endpoint",
    "normalise_base_url",
    "resolve_endpoint",
    "service_name",
    "visible_settings",
]

ENV_KEY_VAR = "OPENAI_API_KEY"
#: Checked in this order when ``use_env_vars`` is set and allowed.
ENV_BASE_URL_VARS = ("OPENAI_API_BASE", "OPENAI_BASE_URL")

_VERSIONED_PATH = re.compile(r"/v\d")
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,99}$")


class _CredentialSource(Protocol):
    async def credential(self, service: str) -> str | None: ...


@dataclass(frozen=True)
class Endpoint:
    """A resolved endpoint. ``repr`` never shows the key."""

    base_url: httpx.URL
    api_key: str | None = None
    key_source: str = "none"

    def __repr__(self) -> str:
        return f"Endpoint(base_url={self.display!r}, key_source={self.key_source!r})"

    @property
    def display(self) -> str:
        """The URL without query string (it may carry a key), for messages."""
        return str(self.base_url.copy_with(query=None, fragment=None))

    def url(self, path: str) -> httpx.URL:
        """``base_url`` + ``path`` (keeps the base's query, e.g. an ``api-version``)."""
        return self.base_url.copy_with(path=self.base_url.path.rstrip("/") + "/" + path.lstrip("/"))


class ApiSettingsValue(dict[str, Any]):
    """The ``api_settings`` output: what the editor may see, plus the resolved endpoint."""

    endpoint: Endpoint | None

    def __init__(self, visible: Mapping[str, Any], endpoint: Endpoint | None) -> None:
        super().__init__(visible)
        self.endpoint = endpoint


def normalise_base_url(raw: str) -> httpx.URL:
    """Validate an OpenAI-compatible base URL; ``http://host`` becomes ``http://host/v1``.

    Paths that already name a version (``/v1``, ``/api/v3``...) and other explicit paths are
    kept; a bare host gets ``/v1`` (the original backend's rule).
    """
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        raise LlmConfigError("base_url is empty: give the endpoint, e.g. https://api.openai.com/v1")
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise LlmConfigError(f"base_url {text!r} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise LlmConfigError(
            f"base_url {text!r} must be an http:// or https:// URL with a host, "
            "e.g. https://api.openai.com/v1"
        )
    if url.userinfo:
        raise LlmConfigError(
            "base_url must not contain a user name or password; put the key in api_key or a "
            "stored credential"
        )
    path = url.path
    if not _VERSIONED_PATH.search(path) and path in ("", "/"):
        path = "/v1"
    return url.copy_with(path=path.rstrip("/") or "/", fragment=None)


def _env_base_url(environ: Mapping[str, str]) -> str | None:
    for name in ENV_BASE_URL_VARS:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def _as_mapping(raw: Any) -> Mapping[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise LlmConfigError("api_settings is not valid JSON; connect an APISettings node") from None
    if not isinstance(raw, Mapping):
        raise LlmConfigError(
            f"api_settings must be an object (connect an APISettings node), got {type(raw).__name__}"
        )
    return raw


def _flag(value: Any, key: str) -> bool:
    """A boolean from an object that may come from JSON text (``"false"`` is false)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", ""):
        return value.strip().lower() == "true"
    raise LlmConfigError(f"{key} must be true or false, got {value!r}")


def service_name(value: Any, default: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if not isinstance(value, str) or not _SERVICE_NAME.match(value.strip()):
        raise LlmConfigError(
            "credential_service must be a short name of letters, digits, '.', '_', ':' or '-' "
            "(e.g. openai)"
        )
    return value.strip()


async def resolve_endpoint(
    raw: Any,
    ctx: _CredentialSource,
    settings: LlmSettings,
    *,
    environ: Mapping[str, str] | None = None,
) -> Endpoint:
    """The endpoint for ``raw`` api settings (an APISettings output, a plain object, or nothing)."""
    if isinstance(raw, ApiSettingsValue) and raw.endpoint is not None:
        return raw.endpoint
    data = _as_mapping(raw)
    env = os.environ if environ is None else environ
    use_env = _flag(data.get("use_env_vars"), "use_env_vars")
    if use_env and not settings.allow_env_keys:
        raise LlmConfigError(
            "use_env_vars is on, but this server does not let nodes read keys from its environment "
            "(the operator can enable plugins.settings.llm.allow_env_keys); put the key in api_key "
            "or store a credential instead"
        )
    base_raw = data.get("base_url") or settings.default_base_url
    if use_env:
        base_raw = _env_base_url(env) or base_raw
    if not isinstance(base_raw, str):
        raise LlmConfigError("base_url must be a string")
    base_url = normalise_base_url(base_raw)

    typed_key = data.get("api_key")
    if typed_key is not None and not isinstance(typed_key, str):
        raise LlmConfigError("api_key must be a string")
    if typed_key and typed_key.strip():
        return Endpoint(base_url, typed_key.strip(), "input")

    service = service_name(data.get("credential_service"), settings.default_credential_service)
    try:
        stored = await ctx.credential(service)
    except Exception as exc:  # noqa: BLE001 - any store failure becomes a clear node error
        raise LlmConfigError(
            f"could not read the stored credential {service!r}: {type(exc).__name__}"
        ) from None
    if stored and stored.strip():
        return Endpoint(base_url, stored.strip(), f"credential:{service}")

    if use_env:
        env_key = env.get(ENV_KEY_VAR, "").strip()
        if env_key:
            return Endpoint(base_url, env_key, "environment")
    return Endpoint(base_url, None, "none")


def visible_settings(data: Mapping[str, Any], endpoint: Endpoint, service: str) -> dict[str, Any]:
    """What the editor shows for an APISettings output (never the key)."""
    return {
        "use_env_vars": _flag(data.get("use_env_vars"), "use_env_vars"),
        "base_url": endpoint.display,
        "credential_service": service,
        "api_key_set": endpoint.api_key is not None,
        "api_key_source": endpoint.key_source,
    }
