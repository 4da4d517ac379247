"""/metrics: HTTP counts by route template, WebSocket gauge, run and node metrics from hub events,
the exposition format, and who may read it."""

from __future__ import annotations

import functools
import re
import time
from typing import Any

import pytest
from starlette.websockets import WebSocket

from comfytavern import hookimpl, websocket_route
from comfytavern.app import create_app
from comfytavern.events import HubEvent
from comfytavern_server_routes.metrics import Counter, Histogram, MetricsRegistry, ServerMetrics
from comfytavern_server_routes.metrics_feed import metrics_for
from comfytavern_testing import client_for

SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A strict reader of the text format: every line is a comment or a well-formed sample."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, f"malformed line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        samples[(match["name"], labels)] = float(match["value"])
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class SocketPlugin:
    name = "metrics-socket-plugin"

    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def echo(ws: WebSocket) -> None:
            await ws.accept()
            async for text in ws.iter_text():
                await ws.send_text(text)

        return [websocket_route("/api/test-echo", echo, summary="echo")]


def test_http_requests_are_counted_by_route_template_and_status(kernel: Any) -> None:
    with client_for(kernel) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        assert client.get("/docs/assets/favicon-32x32.png").status_code == 200
        assert client.get("/docs/assets/nope.png").status_code == 404
        assert client.get("/no/such/path/123").status_code == 404
        assert client.post("/healthz").status_code == 405
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(response.text)
    assert value(samples, "ct_http_requests_total", method="GET", route="/healthz", status="200") == 3
    # concrete paths are folded into their template: the label set stays bounded
    assert value(samples, "ct_http_requests_total", method="GET", route="/docs/assets/{name}", status="200") == 1
    assert value(samples, "ct_http_requests_total", method="GET", route="/docs/assets/{name}", status="404") == 1
    assert value(samples, "ct_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert value(samples, "ct_http_requests_total", method="POST", route="/healthz", status="405") == 1
    assert not any("/no/such/path" in str(key) for key in samples)
    assert value(samples, "ct_http_request_duration_seconds_count", method="GET", route="/healthz") == 3
    assert value(samples, "ct_build_info", version=kernel_version()) == 1


def kernel_version() -> str:
    from comfytavern import __version__

    return __version__


def test_websocket_connections_are_tracked(make_full_kernel: Any) -> None:
    kernel = make_full_kernel()
    kernel.register_plugin(SocketPlugin())
    with client_for(kernel) as client:
        with client.websocket_connect("/api/test-echo") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
            during = parse(client.get("/metrics").text)
        after = parse(client.get("/metrics").text)
    assert value(during, "ct_ws_connections") == 1
    assert value(after, "ct_ws_connections") == 0
    assert value(after, "ct_ws_connections_total") == 1


def test_run_and_node_metrics_follow_hub_events(kernel: Any) -> None:
    metrics = metrics_for(kernel)
    with client_for(kernel) as client:
        assert client.portal is not None
        emit = functools.partial(client.portal.call)
        events = [
            ("EXECUTION_STATUS_UPDATE", {"promptId": "r1", "status": "queued"}),
            ("EXECUTION_STATUS_UPDATE", {"promptId": "r2", "status": "running"}),
            ("EXECUTION_STATUS_UPDATE", {"promptId": "r1", "status": "running"}),
            ("NODE_EXECUTING", {"promptId": "r1", "nodeId": "n1", "nodeType": "core:TextMerge"}),
            ("NODE_EXECUTING", {"promptId": "r1", "nodeId": "n2"}),
            ("NODE_COMPLETE", {"promptId": "r1", "nodeId": "n1", "output": {}}),
            ("NODE_ERROR", {"promptId": "r1", "nodeId": "n2", "errorDetails": {}}),
            ("EXECUTION_STATUS_UPDATE", {"promptId": "r1", "status": "complete"}),
        ]
        for type_, payload in events:
            emit(functools.partial(kernel.hub.emit, type_, payload, prompt_id=payload["promptId"], owner_id="u"))
        deadline = time.monotonic() + 5
        while metrics.runs_finished.value(status="complete") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        samples = parse(client.get("/metrics").text)
    assert value(samples, "ct_runs_finished_total", status="complete") == 1
    assert value(samples, "ct_runs_running") == 1  # r2 still running
    assert value(samples, "ct_runs_queued") == 0
    assert value(samples, "ct_run_duration_seconds_count", status="complete") == 1
    assert value(samples, "ct_node_duration_seconds_count", type="core:TextMerge", status="complete") == 1
    assert value(samples, "ct_node_duration_seconds_count", type="unknown", status="error") == 1


def test_observe_event_state_machine() -> None:
    m = ServerMetrics()
    observe = m.observe_event
    observe(HubEvent("EXECUTION_STATUS_UPDATE", {"promptId": "a", "status": "queued"}), now=0.0)
    observe(HubEvent("EXECUTION_STATUS_UPDATE", {"promptId": "b", "status": "queued"}), now=0.0)
    assert m.runs_queued.value() == 2 and m.runs_running.value() == 0
    observe(HubEvent("EXECUTION_STATUS_UPDATE", {"promptId": "a", "status": "running"}), now=1.0)
    assert m.runs_queued.value() == 1 and m.runs_running.value() == 1
    observe(HubEvent("NODE_EXECUTING", {"promptId": "a", "nodeId": "x", "nodeType": "core:Llm"}), now=1.5)
    observe(HubEvent("EXECUTION_STATUS_UPDATE", {"promptId": "a", "status": "interrupted"}), now=4.0)
    # the node never completed: no node duration, and its start is forgotten with the run
    assert m.node_duration.count(type="core:Llm", status="complete") == 0
    observe(HubEvent("NODE_COMPLETE", {"promptId": "a", "nodeId": "x"}), now=5.0)
    assert m.node_duration.count(type="core:Llm", status="complete") == 0
    assert m.run_duration.total(status="interrupted") == pytest.approx(3.0)
    # a queued run removed before it started is finished, without a duration
    observe(HubEvent("EXECUTION_STATUS_UPDATE", {"promptId": "b", "status": "interrupted"}), now=6.0)
    assert m.runs_finished.value(status="interrupted") == 2
    assert m.run_duration.count(status="interrupted") == 1
    assert m.runs_queued.value() == 0 and m.runs_running.value() == 0
    # the broadcast queue update is authoritative; per-user ones are ignored
    observe(HubEvent("SYSTEM_QUEUE_UPDATE", {"runningExecutions": 3, "pendingExecutions": 4}, owner_id="u1"))
    assert m.runs_running.value() == 0
    observe(HubEvent("SYSTEM_QUEUE_UPDATE", {"runningExecutions": 3, "pendingExecutions": 4}))
    assert m.runs_running.value() == 3 and m.runs_queued.value() == 4
    # junk is ignored
    observe(HubEvent("EXECUTION_STATUS_UPDATE", "not a dict"))
    observe(HubEvent("NODE_COMPLETE", {"nodeId": "y"}))
    observe(HubEvent("EXECUTION_STATUS_UPDATE", {"promptId": "z", "status": "mystery"}))


def test_exposition_format() -> None:
    registry = MetricsRegistry()
    counter = registry.register(Counter("ct_x_total", "X.", ["path"]))
    counter.inc(path='a "quoted"\\ path\n')
    hist = registry.register(Histogram("ct_h_seconds", "H.", [], buckets=(0.1, 1.0)))
    for sample in (0.05, 0.1, 0.5, 7.0):
        hist.observe(sample)
    text = registry.render()
    assert "# TYPE ct_x_total counter" in text and "# TYPE ct_h_seconds histogram" in text
    assert 'ct_x_total{path="a \\"quoted\\"\\\\ path\\n"} 1' in text
    samples = parse(text)
    assert value(samples, "ct_h_seconds_bucket", le="0.1") == 2  # le is inclusive
    assert value(samples, "ct_h_seconds_bucket", le="1.0") == 3  # prometheus_client spells bounds as floats
    assert value(samples, "ct_h_seconds_bucket", le="+Inf") == 4 == value(samples, "ct_h_seconds_count")
    assert value(samples, "ct_h_seconds_sum") == pytest.approx(7.65)
    with pytest.raises(ValueError):
        counter.inc(-1, path="a")
    with pytest.raises(ValueError):
        counter.inc(wrong="label")
    with pytest.raises(ValueError):
        registry.register(Counter("ct_x_total", "again"))


@pytest.mark.parametrize(
    ("token", "status"),
    [
        (None, 401),
        ("user-session", 403),  # a signed-in user who is not an administrator
        ("user-key-star", 403),  # a wildcard key of a non-administrator: scope not granted explicitly
        ("user-key-server", 200),  # a key granted server:read
        ("admin-session", 200),
        ("admin-key-server", 200),
        ("admin-key-projects", 403),  # an administrator's key without a server scope
    ],
)
def test_metrics_access_outside_local_mode(token_kernel: Any, auth_header: Any, token: str | None, status: int) -> None:
    with client_for(token_kernel()) as client:
        response = client.get("/metrics", headers=auth_header(token) if token else {})
    assert response.status_code == status, response.text
    if status != 200:
        assert "error" in response.json()


def test_metrics_can_be_made_public(token_kernel: Any) -> None:
    kernel = token_kernel(plugins={"settings": {"server-routes": {"public_metrics": True}}})
    with client_for(kernel) as client:
        assert client.get("/metrics").status_code == 200
        spec = client.get("/openapi.json").json()
    assert spec["paths"]["/metrics"]["get"]["x-auth"] == "public"


def test_bad_plugin_settings_are_reported(token_kernel: Any) -> None:
    kernel = token_kernel(plugins={"settings": {"server-routes": {"public_metrics": "maybe"}}})
    create_app(kernel)  # routes are collected here
    row = next(r for r in kernel.plugin_rows() if r["name"] == "server-routes")
    assert row["status"] == "error"
    assert "plugins.settings.server-routes" in row["error"]


def test_real_runs_are_counted(make_full_kernel: Any) -> None:
    """Runs executed by the engine (not synthetic events) show up in the run and node metrics."""
    import comfytavern_testnodes as testnodes

    kernel = make_full_kernel()
    kernel.register_plugin(testnodes, kind="node_pack", name="metrics-testnodes")
    kernel.reload_nodes()
    metrics = metrics_for(kernel)
    payload = {"nodes": [{"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": 0.02}}]}
    with client_for(kernel) as client:
        for _ in range(2):
            response = client.post("/api/prompt?wait=10", json=payload)
            if response.status_code == 404:
                pytest.skip("the executions plugin is not installed")
            assert response.json()["status"] == "complete", response.text
        deadline = time.monotonic() + 5
        while metrics.runs_finished.value(status="complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        samples = parse(client.get("/metrics").text)
    assert value(samples, "ct_runs_finished_total", status="complete") == 2
    assert value(samples, "ct_run_duration_seconds_count", status="complete") == 2
    assert value(samples, "ct_run_duration_seconds_sum", status="complete") >= 0.04
    node_counts = {k: v for k, v in samples.items() if k[0] == "ct_node_duration_seconds_count"}
    assert sum(node_counts.values()) == 2
    # Timed by the engine (the final status event's node_timings), not by when events arrived.
    node_sums = {k: v for k, v in samples.items() if k[0] == "ct_node_duration_seconds_sum"}
    assert sum(node_sums.values()) >= 0.04
    assert value(samples, "ct_runs_running") == 0 and value(samples, "ct_runs_queued") == 0
    assert value(samples, "ct_http_requests_total", method="POST", route="/api/prompt", status="200") == 2


def test_every_documented_series_is_exposed_and_parses(kernel: Any) -> None:
    """The names and labels of docs/operations.md, read back with prometheus_client's own parser;
    two kernels keep separate registries."""
    from prometheus_client.parser import text_string_to_metric_families

    with client_for(kernel) as client:
        client.get("/healthz")
        text = client.get("/metrics").text
    parsed = list(text_string_to_metric_families(text))
    kinds = {(f.name, f.type) for f in parsed}
    families = {f.name: f for f in parsed}
    expected = {
        "ct_http_requests": "counter", "ct_http_request_duration_seconds": "histogram",
        "ct_ws_connections": "gauge", "ct_runs_queued": "gauge", "ct_runs_running": "gauge",
        "ct_runs_finished": "counter", "ct_run_duration_seconds": "histogram",
        "ct_node_duration_seconds": "histogram", "ct_process_start_time_seconds": "gauge", "ct_build_info": "gauge",
    }
    for name, kind in expected.items():
        assert (name, kind) in kinds, name
    assert ("ct_ws_connections", "counter") in kinds  # ct_ws_connections_total
    # the counter ct_ws_connections_total and the gauge ct_ws_connections are both there
    assert "# TYPE ct_ws_connections_total counter" in text and "# TYPE ct_ws_connections gauge" in text
    labels = {tuple(sorted(s.labels)) for s in families["ct_http_requests"].samples if s.name == "ct_http_requests_total"}
    assert labels == {("method", "route", "status")}
    other = ServerMetrics()
    assert other.http_requests.value(method="GET", route="/healthz", status="200") == 0
    assert metrics_for(kernel).http_requests.value(method="GET", route="/healthz", status="200") == 1


def test_observe_many_matches_observing_one_by_one() -> None:
    values = [0.0, 0.0005, 0.0007, 0.001, 0.3, 5.0, 1000.0, 0.02]
    one, many = MetricsRegistry(), MetricsRegistry()
    a = one.histogram("ct_a_seconds", "a", ["type"], buckets=(0.0005, 0.001, 0.1, 5.0))
    b = many.histogram("ct_a_seconds", "a", ["type"], buckets=(0.0005, 0.001, 0.1, 5.0))
    for v in values:
        a.observe(v, type="t")
    b.observe_many(values, type="t")
    def exposed(registry: MetricsRegistry) -> list[str]:
        return [line for line in registry.render().splitlines() if "_created" not in line]

    assert exposed(one) == exposed(many)
    assert b.count(type="t") == len(values) and b.total(type="t") == pytest.approx(sum(values))
