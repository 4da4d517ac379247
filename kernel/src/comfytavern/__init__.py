"""ComfyTavern Server kernel: the public API for plugin and node-pack authors.

Everything a plugin or node pack needs is importable from here::

    from comfytavern import hookimpl, node, Input, Output, Outputs, NodeContext
"""

from comfytavern.auth import AuthBackend, Principal, current_principal, optional_principal
from comfytavern.config import Config, ConfigError, load_config
from comfytavern.events import EventHub, HubEvent
from comfytavern.hookspecs import hookimpl
from comfytavern.http import ApiError, RouteDoc, json_response, read_json, route, websocket_route
from comfytavern.nodes.context import NodeContext
from comfytavern.nodes.definition import (
    BypassSpec,
    Input,
    InputAction,
    Mode,
    Node,
    NodeDefinition,
    Output,
    Outputs,
    node,
)
from comfytavern.records import AuthMode, CliCommand, HttpMiddleware, StorageBackend
from comfytavern.services import MissingService, ServiceKey, Services, ServiceUse, provides, requires, uses
from comfytavern.version import HOOK_API_VERSION, __version__

__all__ = [
    "HOOK_API_VERSION",
    "ApiError",
    "AuthBackend",
    "AuthMode",
    "BypassSpec",
    "CliCommand",
    "Config",
    "ConfigError",
    "EventHub",
    "HttpMiddleware",
    "HubEvent",
    "Input",
    "InputAction",
    "Mode",
    "Node",
    "NodeContext",
    "NodeDefinition",
    "Output",
    "Outputs",
    "MissingService",
    "Principal",
    "RouteDoc",
    "ServiceKey",
    "ServiceUse",
    "Services",
    "StorageBackend",
    "__version__",
    "current_principal",
    "hookimpl",
    "json_response",
    "load_config",
    "node",
    "optional_principal",
    "provides",
    "read_json",
    "requires",
    "route",
    "uses",
    "websocket_route",
]
