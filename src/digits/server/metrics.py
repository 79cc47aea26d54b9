"""Prometheus metrics (``GET /metrics``): requests, latency, answers and the model, summed over workers.

Every worker process writes its figures where prometheus-client's multiprocess mode can read them
(``serve`` names the folder in ``PROMETHEUS_MULTIPROC_DIR`` before it starts the workers), so
whichever worker answers ``/metrics`` reports the whole server; a single process keeps them in memory.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: prometheus-client's own switch to multiprocess mode: a folder the workers share.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Request latency buckets in seconds: a read takes a few milliseconds; big photos take longer.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The server's metrics and their exposition."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model_name: str, workers_replaced: int = 0):
        self.registry = CollectorRegistry()
        shared = MULTIPROCESS_ENV in os.environ
        # In multiprocess mode the values live in files; /metrics collects every process's files.
        own = None if shared else self.registry
        self.requests = Counter(
            "digits_requests",
            "HTTP requests answered, by endpoint and status",
            ["endpoint", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "digits_request_seconds",
            "Time from request to response, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.answers = Counter(
            "digits_answers", "Digits read (0-9) and marks answered not_a_digit", ["answer"], registry=own
        )
        model = Gauge(
            "digits_model_info",
            "The model being served (always 1)",
            ["model"],
            registry=own,
            multiprocess_mode="max",
        )
        model.labels(model_name).set(1)
        replaced = Gauge(
            "digits_workers_replaced",
            "Server worker processes that died and were replaced since the server started",
            registry=own,
            multiprocess_mode="max",
        )
        replaced.set(workers_replaced)
        if shared:
            from prometheus_client.multiprocess import MultiProcessCollector

            MultiProcessCollector(self.registry)

    def count_answer(self, answer: dict) -> None:
        """Count one reading (see digits.inference.reading) by its digit, or as not a digit."""
        self.answers.labels("not_a_digit" if answer["not_a_digit"] else str(answer["digit"])).inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Count every HTTP request by its route (not its raw path, which a client chooses) and status."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")  # set by the router; unknown paths share one label
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
