"""``core:APISettings``: where an OpenAI-compatible endpoint is and which key to use.

The output shows the editor the base URL and whether a key was found, never the key itself
(the original sent the key to the browser in ``NODE_COMPLETE``).
"""

from __future__ import annotations

from typing import Any

from comfytavern import Input, NodeContext, Output, node
from comfytavern_nodes_llm.endpoint import ApiSettingsValue, resolve_endpoint, service_name, visible_settings
from comfytavern_nodes_llm.runtime import as_bool, as_text, llm_settings

__all__ = ["api_settings"]


async def _execute(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    settings, _multi_user = llm_settings(ctx)
    data = {
        "use_env_vars": as_bool(inputs, "use_env_vars"),
        "base_url": as_text(inputs, "base_url", default="https://api.openai.com/v1"),
        "api_key": as_text(inputs, "api_key"),
        "credential_service": as_text(inputs, "credential_service"),
    }
    endpoint = await resolve_endpoint(data, ctx, settings)
    service = service_name(data["credential_service"], settings.default_credential_service)
    return {"api_settings": ApiSettingsValue(visible_settings(data, endpoint, service), endpoint)}


api_settings = node(
    type="APISettings",
    category="TEST-LLM",
    display_name="🦉API设置",
    description="配置 OpenAI API 或其他兼容 API 的连接信息",
    inputs={
        "use_env_vars": Input(
            data_flow_type="BOOLEAN",
            display_name="使用环境变量",
            description="是否使用环境变量获取 API 密钥和基础 URL",
            required=True,
            config={"default": False},
        ),
        "base_url": Input(
            data_flow_type="STRING",
            display_name="API 基础 URL",
            description="OpenAI API 的基础 URL",
            required=True,
            match_categories=["Url"],
            config={"default": "https://api.openai.com/v1", "multiline": False},
        ),
        "api_key": Input(
            data_flow_type="STRING",
            display_name="API 密钥",
            description="用于身份验证的 OpenAI API 密钥",
            required=True,
            config={"default": "", "multiline": False},
        ),
        "credential_service": Input(
            data_flow_type="STRING",
            display_name="凭据服务名",
            description=(
                "API 密钥为空时使用的已保存凭据的服务名 (Stored credential used when the API key "
                "is empty; leave empty for the server default, usually 'openai')"
            ),
            required=False,
            config={"default": "", "multiline": False, "placeholder": "openai"},
        ),
    },
    outputs={
        "api_settings": Output(
            data_flow_type="OBJECT",
            display_name="API 配置",
            description="包含 API 密钥和基础 URL 的配置信息",
            match_categories=["LlmConfig"],
        ),
    },
)(_execute)
