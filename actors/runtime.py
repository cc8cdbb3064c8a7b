"""Joining the Ray cluster. Every process that calls actors connects here, once."""

from __future__ import annotations

import asyncio
import logging

import ray

from core.settings import Settings

log = logging.getLogger("spotless.actors")


def connect(settings: Settings) -> None:
    """Join the cluster at RAY_ADDRESS (or start a local one when it is empty)."""
    if ray.is_initialized():
        return
    ray.init(
        address=settings.ray_address or None,
        namespace=settings.ray_namespace,
        logging_level=logging.WARNING,
        log_to_driver=False,
        include_dashboard=False if not settings.ray_address else None,
        configure_logging=True,
    )


def disconnect() -> None:
    if ray.is_initialized():
        ray.shutdown()


async def ping(timeout_s: float = 2.0) -> None:
    """One round trip to the cluster's control store; raises when Ray cannot answer."""
    if not ray.is_initialized():
        raise RuntimeError("not connected to Ray")
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.run_in_executor(None, ray.cluster_resources), timeout_s)


def shard_name(prefix: str, shard: int, count: int) -> str:
    """The Ray name of shard `shard` of `count` of one kind: how every process finds it."""
    return f"{prefix}-{shard}-of-{count}"


def shard_options(
    settings: Settings, name: str, *, max_concurrency: int = 64, max_task_retries: int = 3
) -> dict[str, object]:
    """How every shard actor is created: named and namespaced so any process finds it, created
    by whoever asks first, detached from its creator, and restarted by Ray when its process dies
    (it then reloads its entities from PostgreSQL)."""
    return {
        "name": name, "namespace": settings.ray_namespace, "get_if_exists": True,
        "lifetime": "detached", "max_restarts": -1, "max_task_retries": max_task_retries,
        "max_concurrency": max_concurrency, "num_cpus": 0,
    }
