"""Structured logs with request ids, and Prometheus metrics for the edge."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextvars import ContextVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from sanic import Request
from sanic.response import HTTPResponse

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

REQUESTS = Counter("spotless_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "spotless_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, *, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def on_request(request: Request) -> None:
    request.ctx.started = time.perf_counter()
    request_id_var.set(str(request.id))


def on_response(request: Request, response: HTTPResponse) -> None:
    response.headers["X-Request-ID"] = str(request.id)
    route = request.route.path if request.route else "unmatched"
    started = getattr(request.ctx, "started", None)
    REQUESTS.labels(request.method, route, str(response.status)).inc()
    if started is not None:
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)


def render_metrics() -> tuple[bytes, str]:
    """The Prometheus exposition, merged across workers when PROMETHEUS_MULTIPROC_DIR is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
