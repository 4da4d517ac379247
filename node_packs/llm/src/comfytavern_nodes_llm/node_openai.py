"""``core:OpenAIChat`` (batch, with history) and ``core:OpenAI`` (streaming or batch).

Failures raise (the engine reports ``NODE_ERROR`` with the message) instead of being returned as
output text the way the original did, so dependants are skipped rather than fed an error string.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from comfytavern import Input, NodeContext, Output, Outputs, node
from comfytavern_nodes_llm.client import ChatRequest
from comfytavern_nodes_llm.endpoint import resolve_endpoint
from comfytavern_nodes_llm.errors import LlmConfigError
from comfytavern_nodes_llm.messages import dump_messages, parse_messages, transcript, user_message
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

__all__ = ["openai", "openai_chat"]


def _model(inputs: dict[str, Any], default: str) -> str:
    model = as_text(inputs, "model", default=default).strip()
    if not model:
        raise LlmConfigError("model is empty: name the model to use (e.g. gpt-4o-mini)")
    return model


def _sampling(inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "temperature": as_number(inputs, "temperature", default=0.7, minimum=0, maximum=2),
        "max_tokens": as_number(inputs, "max_tokens", default=512, minimum=1, integer=True),
    }


async def _openai_chat(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    settings, _ = llm_settings(ctx)
    endpoint = await resolve_endpoint(inputs.get("api_settings"), ctx, settings)
    model = _model(inputs, "gpt-4o")
    system_prompt = as_text(inputs, "system_prompt").strip()
    user_input = as_text(inputs, "user_input")
    image = as_text(inputs, "image")
    if not user_input.strip() and not image.strip():
        raise LlmConfigError("user_input is empty: there is nothing to send to the model")
    past = [] if as_bool(inputs, "clear_history") else parse_messages(
        inputs.get("external_history"), slot="external_history"
    )
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    turn = user_message(user_input, image)
    request = ChatRequest(model, [*system, *past, turn], _sampling(inputs))
    result = await run_batch(ctx, endpoint, request)
    reply = {"role": "assistant", "content": result.text}
    new_history = [*past, turn, reply]
    return {
        "full_conversation": transcript([*system, *new_history]),
        "current_output": result.text,
        "history": dump_messages(new_history),
    }


async def _openai(inputs: dict[str, Any], ctx: NodeContext) -> AsyncIterator[Any]:
    settings, _ = llm_settings(ctx)
    endpoint = await resolve_endpoint(inputs.get("api_settings"), ctx, settings)
    model = _model(inputs, "deepseek-chat")
    system_prompt = as_text(inputs, "system_prompt").strip()
    prompt = as_text(inputs, "prompt")
    image = as_text(inputs, "image")
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.extend(parse_messages(inputs.get("history"), slot="history"))
    if prompt.strip() or image.strip():
        messages.append(user_message(prompt, image))
    if not any(m["role"] != "system" for m in messages):
        raise LlmConfigError("prompt and history are both empty: there is nothing to send to the model")
    request = ChatRequest(model, messages, _sampling(inputs))

    if as_bool(inputs, "stream"):
        collected = Collected()
        async for item in run_stream(ctx, endpoint, request, collected):
            yield item
        yield chunk("finish_reason_chunk", (collected.finish and collected.finish.finish_reason) or "stop")
        yield Outputs(response=collected.text)
        return

    result = await run_batch(ctx, endpoint, request)
    for item in batch_chunks(result, result.finish_reason or "stop"):
        yield item
    yield Outputs(response=result.text)


_API_SETTINGS_MATCH = ["LlmConfig"]

openai_chat = node(
    type="OpenAIChat",
    category="TEST-LLM",
    display_name="🦉OpenAI连续聊天",
    description="与OpenAI模型进行交互，支持历史记录和图像输入",
    inputs={
        "api_settings": Input(
            data_flow_type="OBJECT",
            display_name="API配置",
            description="OpenAI API 的相关配置",
            required=True,
            match_categories=_API_SETTINGS_MATCH,
        ),
        "model": Input(
            data_flow_type="STRING",
            display_name="模型名称",
            description="用于生成对话的模型名称",
            required=True,
            config={"default": "gpt-4o", "placeholder": "输入模型名称，如 gpt-4o, gemini-1.5-flash-exp-0827 等"},
        ),
        "temperature": Input(
            data_flow_type="FLOAT",
            display_name="温度参数",
            description="控制生成文本的随机性，值越高越随机",
            required=True,
            config={"default": 0.7, "min": 0, "max": 2, "step": 0.1},
        ),
        "max_tokens": Input(
            data_flow_type="INTEGER",
            display_name="最大令牌数",
            description="限制模型生成文本的最大长度",
            required=True,
            config={"default": 512, "min": 1, "max": 16384},
        ),
        "system_prompt": Input(
            data_flow_type="STRING",
            display_name="系统提示",
            description="用于指导模型行为的初始提示",
            required=True,
            match_categories=["Prompt"],
            config={"multiline": True},
        ),
        "clear_history": Input(
            data_flow_type="BOOLEAN",
            display_name="清除历史记录",
            description="是否在每次运行时清除对话历史",
            required=True,
            config={"default": False},
        ),
        "user_input": Input(
            data_flow_type="STRING",
            display_name="用户输入",
            description="用户发送给模型的文本",
            required=True,
            match_categories=["Prompt"],
            config={"multiline": True},
        ),
        "external_history": Input(
            data_flow_type="STRING",
            display_name="外部历史记录",
            description="从外部传入的历史对话记录 (JSON字符串)",
            required=False,
            match_categories=["ChatHistory", "Json"],
        ),
        "image": Input(
            data_flow_type="STRING",
            display_name="图像输入",
            description="用户上传的图像 (URL/Base64)",
            required=False,
            match_categories=["ImageData", "Url"],
        ),
    },
    outputs={
        "full_conversation": Output(
            data_flow_type="STRING",
            display_name="完整对话历史",
            description="包含系统提示、用户输入和模型回复的完整对话记录",
            match_categories=["ChatHistory"],
        ),
        "current_output": Output(
            data_flow_type="STRING",
            display_name="当前输出",
            description="模型生成的当前回复",
            match_categories=["LlmOutput"],
        ),
        "history": Output(
            data_flow_type="STRING",
            display_name="更新后的历史记录",
            description="包含所有对话轮次的历史记录，用于后续对话 (JSON字符串)",
            match_categories=["ChatHistory", "Json"],
        ),
    },
)(_openai_chat)

openai = node(
    type="OpenAI",
    category="TEST-LLM",
    display_name="🦉OpenAI格式聊天",
    description="Generate text using OpenAI chat models",
    inputs={
        "api_settings": Input(
            data_flow_type="OBJECT",
            display_name="API 设置",
            description="来自 APISettings 节点的 API 设置",
            required=True,
            match_categories=_API_SETTINGS_MATCH,
        ),
        "model": Input(
            data_flow_type="STRING",
            display_name="模型",
            description="请求所使用的模型",
            required=True,
            config={
                "default": "deepseek-chat",
                "suggestions": [
                    {"value": "deepseek-chat", "label": "deepseek-chat"},
                    {"value": "chatgpt-4o-latest", "label": "chatgpt-4o-latest"},
                    {"value": "claude-sonnet-4-20250514", "label": "claude-sonnet-4-20250514"},
                    {"value": "gemini-2.5-flash-preview-05-20", "label": "gemini-2.5-flash-preview-05-20"},
                ],
                "multiline": False,
                "placeholder": "输入模型名称",
            },
        ),
        "temperature": Input(
            data_flow_type="FLOAT",
            display_name="温度",
            description="采样温度",
            required=True,
            config={"default": 0.7, "min": 0, "max": 2, "step": 0.1},
        ),
        "max_tokens": Input(
            data_flow_type="INTEGER",
            display_name="最大令牌数",
            description="要生成的最大令牌数",
            required=True,
            config={"default": 512, "min": 1, "max": 16384},
        ),
        "system_prompt": Input(
            data_flow_type="STRING",
            display_name="系统提示",
            description="系统提示",
            required=True,
            match_categories=["Prompt", "UiBlock"],
            config={"default": "", "multiline": True, "placeholder": "系统提示词"},
        ),
        "prompt": Input(
            data_flow_type="STRING",
            display_name="用户提示",
            description="用户提示",
            required=True,
            match_categories=["Prompt", "UiBlock"],
            config={"default": "", "multiline": True, "placeholder": "用户提示词"},
        ),
        "history": Input(
            data_flow_type="STRING",
            display_name="聊天记录",
            description="聊天记录 (JSON字符串)",
            required=False,
            match_categories=["ChatHistory", "Json"],
        ),
        "image": Input(
            data_flow_type="STRING",
            display_name="图像",
            description="视觉模型的图像 (URL/Base64)",
            required=False,
            match_categories=["ImageData", "Url"],
        ),
        "stream": Input(
            data_flow_type="BOOLEAN",
            display_name="启用流式输出",
            description="如果为 true，则启用流式输出，逐块返回结果。否则，进行批处理并一次性返回完整结果。",
            required=False,
            config={"default": False},
        ),
    },
    outputs={
        "response": Output(
            data_flow_type="STRING",
            display_name="生成回复 (批处理/完整流)",
            description="一次性生成的完整文本回复。当启用流式输出时，此端口会在流处理完成后提供聚合的完整内容。",
            match_categories=["LlmOutput"],
        ),
        "stream_output": Output(
            data_flow_type="STRING",
            is_stream=True,
            display_name="回复流 (流式)",
            description="逐块生成的文本回复数据流。仅当“启用流式输出”为 true 时有效。",
            match_categories=["LlmOutput", "TextStream"],
        ),
    },
)(_openai)
