"""/healthz (process up), /readyz (database, NATS and Ray reachable), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from actors import runtime
from core.errors import PROBLEM_CONTENT_TYPE, problem_body
from edge.observability import render_metrics
from edge.responses import Readiness, Status, json_response
from storage.db import ping_database

bp = Blueprint("health")


@bp.get("/healthz")
@openapi.definition(summary="The process is up", tag="operations")
@openapi.response(200, json_response(Status), "up")
async def healthz(request: Request) -> HTTPResponse:
    return json({"status": "ok"})


async def _check(coro: object, timeout_s: float = 2.0) -> str | None:
    try:
        await asyncio.wait_for(coro, timeout_s)  # type: ignore[arg-type]
        return None
    except Exception as exc:  # readiness reports every failure as "not ready", whatever it was
        return f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__


@bp.get("/readyz")
@openapi.definition(summary="Database, NATS and Ray are reachable (503 names what is not)",
                    tag="operations")
@openapi.response(200, json_response(Readiness), "ready")
async def readyz(request: Request) -> HTTPResponse:
    bus = request.app.ctx.bus
    db_error, ray_error = await asyncio.gather(_check(ping_database()), _check(runtime.ping()))
    checks = {
        "database": db_error or "ok",
        "nats": "ok" if bus.connected else "not connected",
        "ray": ray_error or "ok",
    }
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        return json(
            problem_body(503, "unavailable", "Not ready", f"not reachable: {', '.join(failing)}", checks=checks),
            status=503, headers={"Retry-After": "5"}, content_type=PROBLEM_CONTENT_TYPE,
        )
    return json({"status": "ready", "checks": checks})


@bp.get("/metrics")
@openapi.definition(summary="Prometheus metrics", tag="operations")
@openapi.response(200, {"text/plain": {"type": "string"}}, "the Prometheus text exposition")
async def metrics(request: Request) -> HTTPResponse:
    body, content_type = render_metrics()
    return raw(body, content_type=content_type)
