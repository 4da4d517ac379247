"""Prometheus metrics: a small per-kernel registry and the server's own series.

No global state (tests build many kernels): each kernel owns one :class:`ServerMetrics` with its
own ``prometheus_client.CollectorRegistry``: the ``METRICS`` service, created by this plugin on
first use. ``prometheus_client`` stores the series and writes the text exposition format (version
0.0.4, :meth:`ServerMetrics.render`); ``GET /metrics`` serves it. The thin
:class:`Counter` / :class:`Gauge` / :class:`Histogram` wrappers only keep the keyword-label calls
used here and by plugins (``inc(method="GET", route=..., status=...)``) and validate label names.

What is measured and where it comes from:

- HTTP requests by method, route *template* and status, and their durations:
  :class:`~comfytavern_server_routes.metrics_feed.MetricsMiddleware` (pure ASGI, an ``outer``
  middleware of this plugin, so refused requests are counted too). The template keeps the
  label set bounded (``/api/projects/{projectId}``, never the concrete id); unmatched paths share
  the label ``<unmatched>``.
- WebSocket connections open now and in total: the same middleware, counted when the app sends
  ``websocket.accept`` and released when the connection ends. Routes served by the app need to do
  nothing; code that serves sockets outside the app can use :meth:`ServerMetrics.track_websocket`.
- Runs queued / running, finished by status, run durations, node durations by node type:
  :func:`~comfytavern_server_routes.metrics_feed.run_event_metrics` reads the kernel's event hub (``EXECUTION_STATUS_UPDATE``,
  ``NODE_EXECUTING``, ``NODE_COMPLETE``, ``NODE_ERROR``, ``SYSTEM_QUEUE_UPDATE``).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import prometheus_client

from comfytavern.events import HubEvent
from comfytavern.version import __version__

__all__ = ["CONTENT_TYPE", "UNMATCHED", "Counter", "Gauge", "Histogram", "MetricsRegistry", "ServerMetrics"]

log = logging.getLogger("comfytavern.metrics")
_M = TypeVar("_M", bound="Counter | Gauge | Histogram")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "<unmatched>"
#: When this process imported the kernel (close enough to the process start for dashboards).
PROCESS_START = time.time()
TERMINAL_STATUSES = frozenset({"complete", "error", "interrupted", "skipped"})

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
NODE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class _Metric:
    """One metric of a kernel's registry, keeping the server's keyword-label API
    (``counter.inc(method="GET", ...)``) over a ``prometheus_client`` metric, which does the
    storage, the locking and the exposition."""

    _library: Any = None

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (), **options: Any) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        # registry=None: not in prometheus_client's process-wide default registry; the kernel's
        # MetricsRegistry registers it.
        self.metric = self._library(name, help, self.labelnames, registry=None, **options)
        #: Series by label values: ``labels()`` of the library costs microseconds, and node
        #: metrics are updated for every node of every run.
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, labels: dict[str, str]) -> Any:
        """The series for ``labels`` (exactly the metric's label names, else ``ValueError``)."""
        names = self.labelnames
        key: tuple[Any, ...] | None = None
        if len(labels) == len(names):
            try:
                key = tuple([labels[n] for n in names])
            except KeyError:
                key = None
            if key is not None:
                found = self._children.get(key)
                if found is not None:
                    return found
        if set(labels) != set(names):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {tuple(labels)}")
        if not names:
            return self.metric
        series = self.metric.labels(**{n: str(labels[n]) for n in names})
        if key is not None:
            if len(self._children) > 10_000:
                self._children.clear()
            self._children[key] = series
        return series

    def sample(self, suffix: str = "", **labels: str) -> float:
        """The current value of one sample (``suffix``: ``_count``, ``_sum``...); 0 when unset."""
        self.child(labels)  # validates the label names
        wanted = {n: str(v) for n, v in labels.items()}
        for family in self.metric.collect():
            for sample in family.samples:
                if sample.name == self._sample_name(suffix) and sample.labels == wanted:
                    return float(sample.value)
        return 0.0

    def _sample_name(self, suffix: str) -> str:
        return self.name + suffix


class Counter(_Metric):
    """A monotonically increasing count. Its name should end in ``_total`` (as exposed)."""

    _library = prometheus_client.Counter

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.child(labels).inc(amount)  # a negative amount raises ValueError

    def value(self, **labels: str) -> float:
        return self.sample(**labels)

    def _sample_name(self, suffix: str) -> str:
        return self.name if self.name.endswith("_total") else self.name + "_total"


class Gauge(_Metric):
    """A value that goes up and down."""

    _library = prometheus_client.Gauge

    def set(self, value: float, **labels: str) -> None:
        self.child(labels).set(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.child(labels).inc(amount)

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.child(labels).dec(amount)

    def value(self, **labels: str) -> float:
        return self.sample(**labels)


class Histogram(_Metric):
    """Observations counted into buckets (upper bounds, inclusive; ``+Inf`` is added)."""

    _library = prometheus_client.Histogram

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DURATION_BUCKETS
    ) -> None:
        super().__init__(name, help, labelnames, buckets=tuple(sorted(buckets)))
        self.buckets = tuple(sorted(buckets))

    def observe(self, value: float, **labels: str) -> None:
        self.child(labels).observe(value)

    def observe_many(self, values: Sequence[float], **labels: str) -> None:
        """``observe`` each of ``values``: counted into buckets here, then one update per bucket.

        A run reports every node's duration at its end; the library's ``observe`` takes its locks
        once per value. Falls back to it if the library's series no longer has the
        ``_buckets``/``_sum`` values this relies on.
        """
        series = self.child(labels)
        buckets, total = getattr(series, "_buckets", None), getattr(series, "_sum", None)
        if buckets is None or total is None or len(buckets) != len(self.buckets) + 1:
            for value in values:
                series.observe(value)
            return
        # Sorted once, each bucket's count is one bisection (upper bounds are inclusive): a
        # thousand values cost a C sort, not a thousand Python steps.
        ordered = sorted(values)
        below = 0
        for index, bound in enumerate(self.buckets):
            upto = bisect.bisect_right(ordered, bound, lo=below)
            if upto > below:
                buckets[index].inc(upto - below)
                below = upto
        if len(ordered) > below:
            buckets[-1].inc(len(ordered) - below)
        total.inc(sum(ordered))

    def count(self, **labels: str) -> float:
        return self.sample("_count", **labels)

    def total(self, **labels: str) -> float:
        return self.sample("_sum", **labels)


class MetricsRegistry:
    """One kernel's metrics in a ``prometheus_client.CollectorRegistry`` of its own (no global
    registry, so tests can build many kernels); names must be unique.

    The registry holds this object as its one collector rather than each metric: the library
    files the counter ``ct_ws_connections_total`` under the family name ``ct_ws_connections`` and
    would refuse the gauge of that name, and both names are part of the documented exposition.
    """

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self.collectors = prometheus_client.CollectorRegistry(auto_describe=False)
        self.collectors.register(self)

    def collect(self) -> Iterator[Any]:
        """``prometheus_client`` collector protocol: every metric's families, in registration order."""
        for metric in list(self._metrics.values()):
            yield from metric.metric.collect()

    def register(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"a metric named {metric.name!r} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self.register(Counter(name, help, labelnames))

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self.register(Gauge(name, help, labelnames))

    def histogram(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DURATION_BUCKETS
    ) -> Histogram:
        return self.register(Histogram(name, help, labelnames, buckets))

    def get(self, name: str) -> _Metric | None:
        return self._metrics.get(name)

    def render(self) -> str:
        """The text exposition format (0.0.4), written by ``prometheus_client``."""
        return prometheus_client.generate_latest(self.collectors).decode("utf-8")


class ServerMetrics:
    """Every metric the server exports, plus the run/node state derived from hub events.

    Plugins may add their own metrics with ``metrics.registry.counter(...)`` etc.; names should
    start with ``ct_``.
    """

    def __init__(self) -> None:
        r = self.registry = MetricsRegistry()
        self.build_info = r.gauge("ct_build_info", "Server version (always 1).", ["version"])
        self.build_info.set(1, version=__version__)
        self.start_time = r.gauge("ct_process_start_time_seconds", "Unix time the server process started.")
        self.start_time.set(PROCESS_START)
        self.http_requests = r.counter(
            "ct_http_requests_total", "HTTP requests by method, route template and status.", ["method", "route", "status"]
        )
        self.http_duration = r.histogram(
            "ct_http_request_duration_seconds", "HTTP request durations by method and route template.", ["method", "route"]
        )
        self.ws_connections = r.gauge("ct_ws_connections", "WebSocket connections open now.")
        self.ws_connections_total = r.counter("ct_ws_connections_total", "WebSocket connections accepted since start.")
        self.runs_queued = r.gauge("ct_runs_queued", "Runs waiting in the queue.")
        self.runs_running = r.gauge("ct_runs_running", "Runs executing now.")
        self.runs_finished = r.counter("ct_runs_finished_total", "Runs that ended, by final status.", ["status"])
        self.run_duration = r.histogram(
            "ct_run_duration_seconds", "Run durations (from running to the final status), by status.", ["status"], RUN_BUCKETS
        )
        self.node_duration = r.histogram(
            "ct_node_duration_seconds",
            "Node execution durations by node type and outcome (complete or error).",
            ["type", "status"],
            NODE_BUCKETS,
        )
        self._run_status: dict[str, str] = {}
        self._run_started: dict[str, float] = {}
        self._node_started: dict[tuple[str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def render(self) -> str:
        return self.registry.render()

    # -- WebSockets ------------------------------------------------------------------------
    def websocket_opened(self) -> None:
        self.ws_connections.inc()
        self.ws_connections_total.inc()

    def websocket_closed(self) -> None:
        self.ws_connections.dec()

    @contextlib.contextmanager
    def track_websocket(self) -> Iterator[None]:
        """Count one open WebSocket for the duration of the block (for sockets the app does not serve)."""
        self.websocket_opened()
        try:
            yield
        finally:
            self.websocket_closed()

    # -- runs ------------------------------------------------------------------------------
    def observe_event(self, event: HubEvent, now: float | None = None) -> None:
        """Update run and node metrics from one hub event (unknown events are ignored)."""
        self.observe_events((event,), now)

    def observe_events(self, events: Sequence[HubEvent], now: float | None = None) -> None:
        """:meth:`observe_event` for a batch (one lock and one clock reading for all of them)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for event in events:
                self._observe(event, now)

    def _observe(self, event: HubEvent, now: float) -> None:
        payload = event.payload if isinstance(event.payload, dict) else {}
        if event.type == "EXECUTION_STATUS_UPDATE":
            self._on_status(payload, event.prompt_id, now)
            if event.node_timings is not None:
                self._on_node_timings(event.node_timings())
        elif event.type == "NODE_EXECUTING":
            self._on_node_start(payload, event.prompt_id, now)
        elif event.type in ("NODE_COMPLETE", "NODE_ERROR"):
            self._on_node_end(payload, event.prompt_id, now, "complete" if event.type == "NODE_COMPLETE" else "error")
        elif event.type == "SYSTEM_QUEUE_UPDATE" and event.owner_id is None:
            running = _count(payload.get("runningExecutions"))
            pending = _count(payload.get("pendingExecutions"))
            if running is not None:
                self.runs_running.set(running)
            if pending is not None:
                self.runs_queued.set(pending)

    def _on_node_timings(self, timings: Iterable[tuple[str, str, float]]) -> None:
        by_series: dict[tuple[str, str], list[float]] = {}
        last_type = last_status = None
        found: list[float] = []
        for node_type, status, seconds in timings:
            # Nodes of one type tend to come together (a chain, a fan-out): no look-up for them.
            if node_type is not last_type or status is not last_status:
                last_type, last_status = node_type, status
                found = by_series.setdefault((node_type, status), [])
            found.append(seconds)
        for (node_type, status), values in by_series.items():
            self.node_duration.observe_many(values, type=node_type, status=status)

    def _on_status(self, payload: dict[str, Any], prompt_id: str | None, now: float) -> None:
        run = str(payload.get("promptId") or prompt_id or "")
        status = str(payload.get("status") or "")
        if not run or not status:
            return
        previous = self._run_status.get(run)
        if status in TERMINAL_STATUSES:
            if previous is None and run not in self._run_started:
                # A terminal status for a run we never saw start still counts as finished.
                self.runs_finished.inc(status=status)
                return
            self._run_status.pop(run, None)
            started = self._run_started.pop(run, None)
            self.runs_finished.inc(status=status)
            if started is not None:
                self.run_duration.observe(max(0.0, now - started), status=status)
            for key in [k for k in self._node_started if k[0] == run]:
                del self._node_started[key]
        elif status in ("queued", "running"):
            self._run_status[run] = status
            if status == "running":
                self._run_started.setdefault(run, now)
        else:
            return
        self._recount()

    def _recount(self) -> None:
        statuses = list(self._run_status.values())
        self.runs_queued.set(statuses.count("queued"))
        self.runs_running.set(statuses.count("running"))

    def _on_node_start(self, payload: dict[str, Any], prompt_id: str | None, now: float) -> None:
        run = str(payload.get("promptId") or prompt_id or "")
        node = payload.get("nodeId")
        if not run or node is None:
            return
        node_type = payload.get("nodeType") or payload.get("type") or "unknown"
        self._node_started[(run, str(node))] = (now, str(node_type))

    def _on_node_end(self, payload: dict[str, Any], prompt_id: str | None, now: float, status: str) -> None:
        run = str(payload.get("promptId") or prompt_id or "")
        node = payload.get("nodeId")
        if not run or node is None:
            return
        started = self._node_started.pop((run, str(node)), None)
        if started is None:
            return
        began, node_type = started
        node_type = str(payload.get("nodeType") or node_type)
        self.node_duration.observe(max(0.0, now - began), type=node_type, status=status)


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    return None


