from __future__ import annotations

from typing import Any

from comfytavern import HubEvent
from comfytavern_distributed.coalesce import Coalescer


def node_yield(run: str, node: str, text: Any, last: bool = False) -> HubEvent:
    content = text if not isinstance(text, str) else {"type": "text_chunk", "content": text}
    payload = {"promptId": run, "sourceNodeId": node, "yieldedContent": content, "isLastChunk": last}
    return HubEvent("NODE_YIELD", payload, run, "u1")


def iface_yield(run: str, key: str, text: str, last: bool = False) -> HubEvent:
    payload = {"promptId": run, "interfaceOutputKey": key, "yieldedContent": text, "isLastChunk": last}
    return HubEvent("WORKFLOW_INTERFACE_YIELD", payload, run, "u1")


def other(run: str, type_: str = "NODE_COMPLETE") -> HubEvent:
    return HubEvent(type_, {"promptId": run, "nodeId": "n1", "output": {}}, run, "u1")


def texts(events: list[HubEvent]) -> list[Any]:
    out = []
    for e in events:
        c = e.payload.get("yieldedContent") if isinstance(e.payload, dict) else None
        out.append((e.type, c["content"] if isinstance(c, dict) else c))
    return out


def test_chunks_of_one_stream_merge_until_the_window_closes() -> None:
    c = Coalescer(window=0.04, max_chars=1000)
    assert c.add(node_yield("r", "llm", "Hel"), now=0.0) == []
    assert c.add(node_yield("r", "llm", "lo"), now=0.01) == []
    assert c.next_deadline() == 0.04
    assert c.due(0.03) == []
    out = c.due(0.04)
    assert texts(out) == [("NODE_YIELD", "Hello")]
    assert out[0].payload["yieldedContent"] == {"type": "text_chunk", "content": "Hello"}
    assert out[0].payload["isLastChunk"] is False
    assert c.merged == 1
    assert c.next_deadline() is None


def test_another_event_of_the_run_flushes_first_and_keeps_order() -> None:
    c = Coalescer(window=1.0, max_chars=1000)
    c.add(node_yield("r", "llm", "a"), 0)
    c.add(node_yield("r", "llm", "b"), 0)
    out = c.add(other("r"), 0.1)
    assert texts(out) == [("NODE_YIELD", "ab"), ("NODE_COMPLETE", None)]


def test_last_chunk_flushes_at_once() -> None:
    c = Coalescer(window=1.0, max_chars=1000)
    c.add(iface_yield("r", "out", "x"), 0)
    out = c.add(iface_yield("r", "out", "y", last=True), 0)
    assert texts(out) == [("WORKFLOW_INTERFACE_YIELD", "xy")]
    assert out[0].payload["isLastChunk"] is True


def test_size_limit_flushes() -> None:
    c = Coalescer(window=10.0, max_chars=5)
    assert c.add(node_yield("r", "n", "abc"), 0) == []
    assert texts(c.add(node_yield("r", "n", "def"), 0)) == [("NODE_YIELD", "abcdef")]


def test_streams_are_kept_apart_and_runs_do_not_flush_each_other() -> None:
    c = Coalescer(window=1.0, max_chars=1000)
    c.add(node_yield("r1", "a", "1"), 0)
    c.add(node_yield("r1", "b", "x"), 0)
    c.add(node_yield("r1", "a", "2"), 0)
    c.add(node_yield("r2", "a", "other run"), 0)
    # An event of r2 flushes only r2.
    assert texts(c.add(other("r2"), 0)) == [("NODE_YIELD", "other run"), ("NODE_COMPLETE", None)]
    assert texts(c.drain()) == [("NODE_YIELD", "12"), ("NODE_YIELD", "x")]


def test_non_text_chunks_are_not_merged_and_flush_the_run() -> None:
    c = Coalescer(window=1.0, max_chars=1000)
    c.add(node_yield("r", "n", "partial"), 0)
    err = node_yield("r", "n", {"type": "error_chunk", "content": "boom"})
    out = c.add(err, 0)
    assert [e.payload["yieldedContent"] for e in out] == [{"type": "text_chunk", "content": "partial"}, err.payload["yieldedContent"]]


def test_a_single_chunk_passes_unchanged_and_window_zero_disables_merging() -> None:
    c = Coalescer(window=0.05, max_chars=1000)
    e = node_yield("r", "n", "only")
    c.add(e, 0)
    assert c.due(1) == [e]
    off = Coalescer(window=0, max_chars=1000)
    assert off.add(e, 0) == [e]


def test_events_without_a_dict_payload_pass_through() -> None:
    c = Coalescer(window=1.0, max_chars=10)
    e = HubEvent("NODE_YIELD", "not a dict", "r", None)
    assert c.add(e, 0) == [e]
