"""A small node pack (namespace ``t``) for engine tests and benchmarks.

It covers every kind of node the engine supports: async, sync (worker thread), async and sync
generators (streams), multi inputs, modes, bypass behaviours, failures, slow I/O and progress.
Register it with ``make_kernel(..., node_packs=[comfytavern_testnodes])``; for server subprocesses,
:func:`node_folder` writes a node folder that exposes it. A development package (``libs/testnodes``):
tests and benchmarks use it, no shipped distribution depends on it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio

from comfytavern.hookspecs import hookimpl
from comfytavern.nodes.definition import BypassSpec, Input, Mode, Node, Output, Outputs, node

NAMESPACE = "t"
name = "engine-testnodes"

_F = "FLOAT"


def _f(required: bool = False, default: float | None = None, multi: bool = False) -> Input:
    config = {"default": default} if default is not None else None
    return Input(data_flow_type=_F, required=required, config=config, multi=multi)


@node(type="Const", category="test", display_name="Constant", namespace=NAMESPACE,
      inputs={"value": Input(data_flow_type="WILDCARD")}, outputs={"value": Output(data_flow_type="WILDCARD")})
async def const(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"value": inputs.get("value")}


@node(type="Add", category="test", display_name="Add", namespace=NAMESPACE,
      inputs={"a": Input(data_flow_type=_F, required=True), "b": _f(default=0.0)},
      outputs={"result": Output(data_flow_type=_F)},
      bypass_behavior=BypassSpec(pass_through={"result": "a"}))
async def add(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"result": inputs["a"] + inputs["b"]}


@node(type="Mul", category="test", display_name="Multiply", namespace=NAMESPACE,
      inputs={"a": Input(data_flow_type=_F, required=True), "b": _f(default=1.0)},
      outputs={"result": Output(data_flow_type=_F)})
def mul(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Sync on purpose: runs in a worker thread."""
    return {"result": inputs["a"] * inputs["b"]}


@node(type="Sum", category="test", display_name="Sum", namespace=NAMESPACE,
      inputs={"values": _f(multi=True)}, outputs={"result": Output(data_flow_type=_F)})
async def sum_(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"result": float(sum(v for v in inputs.get("values") or [] if v is not None))}


@node(type="Concat", category="test", display_name="Concat", namespace=NAMESPACE,
      inputs={"parts": Input(data_flow_type="STRING", multi=True), "sep": Input(data_flow_type="STRING", config={"default": ","})},
      outputs={"text": Output(data_flow_type="STRING")})
async def concat(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"text": inputs["sep"].join(str(p) for p in inputs.get("parts") or [])}


@node(type="Fail", category="test", display_name="Fail", namespace=NAMESPACE,
      inputs={"a": Input(data_flow_type="WILDCARD")}, outputs={"result": Output(data_flow_type=_F)})
async def fail(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    raise ValueError("boom")


@node(type="Sleep", category="test", display_name="Sleep", namespace=NAMESPACE,
      inputs={"seconds": _f(default=0.05), "value": Input(data_flow_type="WILDCARD")},
      outputs={"value": Output(data_flow_type="WILDCARD")})
async def sleep(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    await anyio.sleep(inputs["seconds"])
    return {"value": inputs.get("value")}


@node(type="Block", category="test", display_name="Blocking sleep (sync)", namespace=NAMESPACE,
      inputs={"seconds": _f(default=0.05)}, outputs={"done": Output(data_flow_type="BOOLEAN")})
def block(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    time.sleep(inputs["seconds"])
    return {"done": True}


@node(type="Spin", category="test", display_name="Burn CPU (async, never awaits)", namespace=NAMESPACE,
      inputs={"micros": Input(data_flow_type="INTEGER", config={"default": 100}), "value": Input(data_flow_type="WILDCARD")},
      outputs={"value": Output(data_flow_type="WILDCARD")})
async def spin(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    end = time.perf_counter() + inputs["micros"] / 1e6
    while time.perf_counter() < end:
        pass
    return {"value": inputs.get("value")}


@node(type="Stream", category="test", display_name="Stream parts", namespace=NAMESPACE,
      inputs={"parts": Input(data_flow_type="ARRAY"), "delay": _f(default=0.0)},
      outputs={"stream": Output(data_flow_type="STREAM", is_stream=True), "text": Output(data_flow_type="STRING")})
async def stream(inputs: dict[str, Any], ctx: Any) -> AsyncIterator[Any]:
    parts = [str(p) for p in inputs.get("parts") or []]
    for part in parts:
        if inputs["delay"]:
            await anyio.sleep(inputs["delay"])
        yield {"type": "text_chunk", "content": part}
    yield Outputs(text="".join(parts))


@node(type="SyncStream", category="test", display_name="Stream parts (sync generator)", namespace=NAMESPACE,
      inputs={"parts": Input(data_flow_type="ARRAY")},
      outputs={"stream": Output(data_flow_type="STREAM", is_stream=True), "text": Output(data_flow_type="STRING")})
def sync_stream(inputs: dict[str, Any], ctx: Any) -> Iterator[Any]:
    parts = [str(p) for p in inputs.get("parts") or []]
    for part in parts:
        yield {"type": "text_chunk", "content": part}
    yield Outputs(text="".join(parts))


@node(type="ErrorStream", category="test", display_name="Stream then error", namespace=NAMESPACE,
      outputs={"stream": Output(data_flow_type="STREAM", is_stream=True)})
async def error_stream(inputs: dict[str, Any], ctx: Any) -> AsyncIterator[Any]:
    yield {"type": "text_chunk", "content": "partial"}
    yield {"type": "error_chunk", "content": "model exploded"}


@node(type="Collect", category="test", display_name="Collect a stream", namespace=NAMESPACE,
      inputs={"stream": Input(data_flow_type="STREAM", is_stream=True, required=True), "suffix": Input(data_flow_type="STRING")},
      outputs={"text": Output(data_flow_type="STRING"), "count": Output(data_flow_type="INTEGER")})
async def collect(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    parts = [chunk["content"] async for chunk in inputs["stream"] if chunk.get("type") == "text_chunk"]
    return {"text": "".join(parts) + (inputs.get("suffix") or ""), "count": len(parts)}


@node(type="SyncCollect", category="test", display_name="Collect a stream (sync)", namespace=NAMESPACE,
      inputs={"stream": Input(data_flow_type="STREAM", is_stream=True, required=True)},
      outputs={"text": Output(data_flow_type="STRING")})
def sync_collect(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"text": "".join(chunk["content"] for chunk in inputs["stream"])}


@node(type="Relay", category="test", display_name="Relay a stream with a suffix", namespace=NAMESPACE,
      inputs={"stream": Input(data_flow_type="STREAM", is_stream=True, required=True)},
      outputs={"stream": Output(data_flow_type="STREAM", is_stream=True), "count": Output(data_flow_type="INTEGER")},
      bypass_behavior=BypassSpec(pass_through={"stream": "stream"}))
async def relay(inputs: dict[str, Any], ctx: Any) -> AsyncIterator[Any]:
    n = 0
    async for chunk in inputs["stream"]:
        n += 1
        yield {"type": "text_chunk", "content": f"{chunk['content']}!"}
    yield Outputs(count=n)


@node(type="Ignore", category="test", display_name="Ignore a stream", namespace=NAMESPACE,
      inputs={"stream": Input(data_flow_type="STREAM", is_stream=True)},
      outputs={"done": Output(data_flow_type="BOOLEAN")})
async def ignore(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"done": True}


@node(type="Progress", category="test", display_name="Progress", namespace=NAMESPACE,
      inputs={"steps": Input(data_flow_type="INTEGER", config={"default": 3})},
      outputs={"done": Output(data_flow_type="BOOLEAN")})
async def progress(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    for step in range(1, inputs["steps"] + 1):
        await ctx.progress(step, inputs["steps"])
    return {"done": True}


@node(type="Context", category="test", display_name="Context echo", namespace=NAMESPACE,
      config_schema={"label": Input(data_flow_type="STRING", config={"default": "plain"})},
      outputs={"info": Output(data_flow_type="OBJECT")})
async def context(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {
        "info": {
            "label": ctx.config_values.get("label"),
            "user": ctx.user_id,
            "prompt": ctx.prompt_id,
            "interface": dict(ctx.interface_inputs),
        }
    }


async def _double(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"out": inputs["x"] * 2}


async def _negate(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"out": -inputs["x"]}


@node(type="Modes", category="test", display_name="Modes", namespace=NAMESPACE, mode_config_key="mode",
      default_mode_id="double",
      modes={
          "double": Mode("Double", inputs={"x": Input(data_flow_type=_F, required=True)},
                         outputs={"out": Output(data_flow_type=_F)}, execute=_double),
          "negate": Mode("Negate", inputs={"x": Input(data_flow_type=_F, required=True)},
                         outputs={"out": Output(data_flow_type=_F)}, execute=_negate),
      })
async def modes(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {}


@node(type="Mute", category="test", display_name="Muted when bypassed", namespace=NAMESPACE,
      inputs={"a": _f()}, outputs={"result": Output(data_flow_type=_F)}, bypass_behavior="mute")
async def mute(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"result": inputs.get("a")}


@node(type="GroupInput", category="test", display_name="Group input", namespace=NAMESPACE, dynamic_slots=True)
async def group_input(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {key: (slot.get("config") or {}).get("default") for key, slot in ctx.interface_inputs.items()}


@node(type="GroupOutput", category="test", display_name="Group output", namespace=NAMESPACE, dynamic_slots=True)
async def group_output(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    for value in inputs.values():
        if hasattr(value, "__aiter__"):
            async for _ in value:
                pass
    return {}


NODES: list[Node] = [
    const, add, mul, sum_, concat, fail, sleep, block, spin, stream, sync_stream, error_stream, collect,
    sync_collect, relay, ignore, progress, context, modes, mute, group_input, group_output,
]


@hookimpl
def register_nodes() -> list[Node]:
    return NODES


def node_folder(root: Path) -> Path:
    """A plain node folder exposing these test nodes (namespace ``t``) to server subprocesses."""
    folder = root / "custom_nodes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t.py").write_text(
        '"""The engine\'s test nodes, for local clusters."""\n'
        "from comfytavern_testnodes import NAMESPACE, NODES\n\n\n"
        "def register_nodes():\n    return NODES\n",
        encoding="utf-8",
    )
    return folder
