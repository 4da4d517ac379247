"""``core:GenericLlmRequest``: send a message list to a model, streaming or not.

The original routed the model id through per-user "channels"; this server has no channel store,
so the endpoint comes from an optional ``api_settings`` input (connect an ``APISettings`` node)
and otherwise from the operator's ``default_base_url`` with the user's stored ``openai``
credential. The final outputs (``response``, ``responseText``, ``usage``) are delivered in
streaming mode too (the original lost them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from comfytavern import Input, NodeContext, Output, Outputs, node
from comfytavern_nodes_llm.client import ChatRequest, ChatResult
from comfytavern_nodes_llm.endpoint import resolve_endpoint
from comfytavern_nodes_llm.errors import LlmConfigError
from comfytavern_nodes_llm.messages import parse_messages, parse_params
from comfytavern_nodes_llm.runtime import (
    Collected,
    as_bool,
    as_number,
    as_text,
    batch_chunks,
    chunk,
    llm_settings,
    run_batch,
    run_stream,
)

__all__ = ["generic_llm_request"]


def _params(inputs: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    temperature = as_number(inputs, "temperature", default=None, minimum=0, maximum=2)
    if temperature is not None:
        params["temperature"] = temperature
    max_tokens = as_number(inputs, "max_tokens", default=None, minimum=1, integer=True)
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    top_p = as_number(inputs, "top_p", default=None, minimum=0, maximum=1)
    if top_p is not None:
        params["top_p"] = top_p
    seed = as_number(inputs, "seed", default=None, minimum=0, integer=True)
    if seed:
        params["seed"] = seed
    params.update(parse_params(inputs.get("parameters"), slot="parameters"))
    return params


def _finish(result: ChatResult) -> dict[str, Any]:
    """The original's finish chunk content for this node."""
    return {"finish_reason": result.finish_reason or "stop", "accumulated_text": result.text, "usage": result.usage}


def _outputs(result: ChatResult) -> Outputs:
    return Outputs(response=result.as_response(), responseText=result.text, usage=result.usage or {})


async def _execute(inputs: dict[str, Any], ctx: NodeContext) -> AsyncIterator[Any]:
    settings, _ = llm_settings(ctx)
    messages = parse_messages(inputs.get("messages"), slot="messages")
    if not messages:
        raise LlmConfigError(
            "messages is empty: connect a message list (e.g. from CreateMessage / MergeMessages)"
        )
    model = as_text(inputs, "activated_model_id").strip()
    if not model:
        raise LlmConfigError("activated_model_id is empty: name the model to use (e.g. gpt-4o-mini)")
    params = _params(inputs)
    model = str(params.pop("model", model))
    endpoint = await resolve_endpoint(inputs.get("api_settings"), ctx, settings)
    request = ChatRequest(model, messages, params)

    if as_bool(inputs, "stream"):
        collected = Collected()
        async for item in run_stream(ctx, endpoint, request, collected):
            yield item
        result = collected.result()
        yield chunk("finish_reason_chunk", _finish(result))
        yield _outputs(result)
        return

    result = await run_batch(ctx, endpoint, request)
    for item in batch_chunks(result, _finish(result)):
        yield item
    yield _outputs(result)


generic_llm_request = node(
    type="GenericLlmRequest",
    category="LLM",
    display_name="⚡通用 LLM 请求",
    description="向指定的 LLM 模型ID发送请求，渠道由后端自动路由",
    width=350,
    inputs={
        "messages": Input(
            data_flow_type="STRING",
            display_name="消息列表",
            description=(
                "一个包含消息对象的 JSON 字符串数组 (CustomMessage[])\n\n示例格式:\n```json\n[\n  {\n"
                '    "role": "user",\n    "content": "你好，请介绍一下你自己"\n  },\n  {\n'
                '    "role": "assistant",\n    "content": "我是ComfyTavern助手，很高兴为你服务"\n  }\n]\n```'
            ),
            match_categories=["Json", "ChatHistory", "NoDefaultEdit", "UiBlock"],
            config={"default": "[]", "languageHint": "json", "multiline": True},
        ),
        "parameters": Input(
            data_flow_type="STRING",
            display_name="LLM 参数",
            description=(
                '一个包含 LLM API 参数的 JSON 字符串 (e.g., `{"temperature": 0.5, "max_tokens": 1024}`)\n'
                "优先级较高，会合并覆盖本节点 UI 中的单独设置。"
            ),
            required=False,
            match_categories=["Json", "LlmConfig", "NoDefaultEdit"],
            config={"default": "{}", "languageHint": "json"},
        ),
        "activated_model_id": Input(
            data_flow_type="STRING",
            display_name="模型 ID",
            description=(
                "要使用的已激活模型的 ID \n比如`claude-opus-4-20250522`、`gemini-2.5-pro`、`deepseek-reasoner`等"
            ),
        ),
        "temperature": Input(
            data_flow_type="FLOAT",
            display_name="温度",
            description=" (Temperature) 控制生成文本的随机性。较高的值会使输出更随机。",
            required=False,
            config={"default": 0.7, "min": 0, "max": 2, "step": 0.01},
        ),
        "max_tokens": Input(
            data_flow_type="INTEGER",
            display_name="最大令牌数",
            description=" (Max Tokens) 生成的最大令牌数。",
            required=False,
            config={"default": 2048, "min": 1, "max": 65536, "step": 64},
        ),
        "top_p": Input(
            data_flow_type="FLOAT",
            display_name="Top P",
            description=(
                "核心采样。模型会考虑概率质量为 top_p 的令牌。0.1 意味着只考虑构成前 10% 概率质量的令牌。"
            ),
            required=False,
            config={"default": 1, "min": 0, "max": 1, "step": 0.01},
        ),
        "seed": Input(
            data_flow_type="INTEGER",
            display_name="随机种子",
            description=" (Seed) 用于可复现输出的随机种子。",
            required=False,
            config={"default": 0, "min": 0, "step": 1},
        ),
        "stream": Input(
            data_flow_type="BOOLEAN",
            display_name="启用流式输出",
            description="如果为 true，将以流的形式输出结果，否则在完成后一次性输出。",
            required=False,
            config={"default": False},
        ),
        "api_settings": Input(
            data_flow_type="OBJECT",
            display_name="API 设置",
            description=(
                "可选：来自 APISettings 节点的端点和密钥；未连接时使用服务器默认端点和已保存的 openai 凭据 "
                "(Optional endpoint from an APISettings node; defaults to the server's default endpoint "
                "and your stored 'openai' credential)"
            ),
            required=False,
            match_categories=["LlmConfig"],
        ),
    },
    outputs={
        "response": Output(
            data_flow_type="OBJECT",
            display_name="完整响应",
            description="LLM 返回的完整标准化响应对象。\n在流式模式下，此输出在流结束后才可用。",
            match_categories=["LlmOutput"],
        ),
        "responseText": Output(
            data_flow_type="STRING",
            display_name="响应文本",
            description="LLM 返回的主要文本内容。\n在流式模式下，这是累积所有文本块后的最终结果。",
            match_categories=["LlmOutput"],
        ),
        "usage": Output(
            data_flow_type="OBJECT",
            display_name="Token 用量",
            description="LLM 返回的 token 使用情况统计",
            match_categories=["LlmOutput"],
        ),
        "stream_output": Output(
            data_flow_type="STRING",
            is_stream=True,
            display_name="流式输出",
            description="当启用流式输出时，从这里逐块输出结果。",
            match_categories=["StreamChunk"],
        ),
    },
)(_execute)
