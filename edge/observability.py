"""Structured logs with request ids, security headers on every response, and Prometheus metrics
for the edge. Nothing here logs a header value other than the request id, or a setting."""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import TextIO
from urllib.parse import quote, unquote, urlsplit

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

from core import collector
from core.settings import SECRET_SETTINGS, URL_SETTINGS, Settings

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# An incoming X-Request-ID is echoed only when it is short and plain, so a caller cannot inject
# log lines or bloat every log entry; anything else gets a fresh id.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
REQUEST_ID_HEADER = "X-Request-ID"
# The OpenAPI UI pages load scripts; everything else the API serves is data.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = "frame-ancestors 'none'"

REQUESTS = Counter("spotless_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "spotless_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


GC_PAUSES = Histogram(
    "spotless_gc_pause_seconds", "Pauses of Python's cyclic garbage collector", ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
_gc_started = [0.0]


def tune_garbage_collector() -> None:
    """Tune the collector as every long-running process does (core/collector.py: start-up heap
    frozen, thresholds raised so that objects in flight are never promoted and full collections
    stay rare) and time every pause (spotless_gc_pause_seconds)."""
    collector.tune()
    if _time_gc_pause not in gc.callbacks:
        gc.callbacks.append(_time_gc_pause)


def _time_gc_pause(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        GC_PAUSES.labels(str(info["generation"])).observe(time.perf_counter() - _gc_started[0])


class SpotlessRequest(Request):
    """Sanic's request with a request id that is either a sane caller-sent one or a new UUID."""

    @property
    def id(self) -> str:  # type: ignore[override]
        if not self._id:
            incoming = self.headers.getone(REQUEST_ID_HEADER, "")
            self._id = incoming if REQUEST_ID_PATTERN.fullmatch(incoming) else str(uuid.uuid4())
        return str(self._id)


class RequestIdFilter(logging.Filter):
    """Stamps every record with the request id of the task that logs it ("-" outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        return True


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


SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.access", "sanic.server", "sanic.websockets")
SHORTEST_REDACTED = 6  # shorter "secrets" are dev placeholders; redacting them would garble every line


def secret_values(settings: Settings) -> set[str]:
    """Every secret the settings hold, as it could appear in a log line (plain or URL-encoded)."""
    values: set[str] = set()
    for name in SECRET_SETTINGS:
        value = getattr(settings, name)
        if name == "realtime_apps":
            try:
                values.update(str(app.get("secret", "")) for app in json.loads(value))
            except (ValueError, AttributeError, TypeError):
                values.add(value)
        else:
            values.add(value)
    for name in URL_SETTINGS:
        password = urlsplit(getattr(settings, name)).password
        if password:
            values.update({password, unquote(password)})
    values = {v for v in values if len(v) >= SHORTEST_REDACTED}
    # as they appear in a URL's query, and inside a JSON string (the lines this module writes)
    return values | {quote(v, safe="") for v in values} | {json.dumps(v)[1:-1] for v in values}


class RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes formatted lines with every known secret replaced, whoever logged them (an HTTP
    client logging a URL with an app secret in its query, a traceback quoting a setting)."""

    def __init__(self, stream: TextIO, secrets: set[str]) -> None:
        super().__init__(stream)
        self.secrets = sorted(secrets, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, "[redacted]")
        return line


def configure_logging(level: str, *, as_json: bool, secrets: set[str] | None = None) -> None:
    """One handler on the root logger; Sanic's own loggers hand their records to it, so every
    line of the process has the same shape and a request id, and no secret."""
    handler = RedactingHandler(sys.stderr, secrets or set())
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in SANIC_LOGGERS:
        sanic_logger = logging.getLogger(name)
        sanic_logger.handlers[:] = []
        sanic_logger.propagate = True


def on_request(request: Request) -> None:
    request.ctx.started = time.perf_counter()
    request_id_var.set(str(request.id))


def security_headers(request: Request, *, hsts_max_age_s: int, docs_prefix: str) -> dict[str, str]:
    """The headers every API response carries (OWASP's REST security cheat sheet)."""
    headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-site",
        "Content-Security-Policy": DOCS_CSP if request.path.startswith(docs_prefix) else API_CSP,
    }
    if hsts_max_age_s > 0:
        headers["Strict-Transport-Security"] = f"max-age={hsts_max_age_s}; includeSubDomains"
    return headers


def on_response(request: Request, response: HTTPResponse) -> None:
    response.headers["X-Request-ID"] = str(request.id)
    settings = request.app.ctx.settings
    for name, value in security_headers(request, hsts_max_age_s=settings.hsts_max_age_s,
                                        docs_prefix=request.app.config.OAS_URL_PREFIX).items():
        response.headers.setdefault(name, value)
    if "authorization" in request.headers and "cache-control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"  # answers for one user stay out of shared caches
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
