"""Joining the Ray cluster, and how every shard actor asks Ray for a place on it.

Every process that calls actors connects here, once. Every shard factory creates its actor with
`shard_options`, so where shards may run (a custom resource, a memory reservation, SPREAD) is
decided in one place, from the settings; this module never creates an actor itself. It also
decides, for the edge's and the admin's error handlers alike, which failures mean that a
dependency (the database, a shard) is away for a moment rather than a bug.
"""

from __future__ import annotations

import asyncio
import logging
import os

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RaySystemError

from core import collector
from core.errors import Unavailable
from core.settings import Settings
from storage.db import database_unreachable

log = logging.getLogger("spotless.actors")


# A local Ray offers this many units of the shard resource: far more shards than anyone runs
# on one machine, so the resource never limits a local stack, it only has to exist.
LOCAL_SHARD_RESOURCE_UNITS = 10_000


# Ray starts its worker processes, and so every shard actor, at nice 15 (`worker_niceness`): below
# every other process on the machine, as if they ran batch work. A shard is a server on the path
# of every chat message, search and booking; at nice 15 it gets a 36/1024 share against the edge
# workers and PostgreSQL whenever the cores are contended, and each request waits behind them.
# Every Ray we start ourselves runs its workers at the same priority as the rest of the stack;
# on a cluster, `ray start` gets the same through RAY_worker_niceness=0 (ray_cluster.yaml).
# Measured in bench/README.md (session 10).
LOCAL_RAY_SYSTEM_CONFIG: dict[str, object] = {"worker_niceness": 0}


def shard_process_started() -> None:
    """What every shard actor's process does first: tune the collector (core/collector.py), and
    say so in its log when Ray started it at a lower priority than the rest of the stack."""
    collector.tune()  # this process is the shard's alone
    nice = os.nice(0)
    if nice > 0:
        log.warning("this shard's process runs at nice %d, below the edge and PostgreSQL: start Ray "
                    "with RAY_worker_niceness=0 (ray_cluster.yaml) so requests do not wait for it", nice)


def local_resources(settings: Settings) -> dict[str, float]:
    """Custom resources a local (single-node) Ray must offer so that shards can be placed on it."""
    return {settings.shard_resource: LOCAL_SHARD_RESOURCE_UNITS} if settings.shard_resource else {}


def start_local_ray(namespace: str, **options: object) -> None:
    """Start a local (single-node) Ray and join it: every process that starts one (`spotless
    dev`, an edge without RAY_ADDRESS, the tests, the benchmarks) does it here, so every local
    Ray runs its shards as LOCAL_RAY_SYSTEM_CONFIG says. `options` go to `ray.init`."""
    ray.init(namespace=namespace, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, _system_config=LOCAL_RAY_SYSTEM_CONFIG, **options)  # type: ignore[arg-type]


def connect(settings: Settings) -> None:
    """Join the cluster at RAY_ADDRESS (or start a local one when it is empty)."""
    if ray.is_initialized():
        return
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace=settings.ray_namespace, logging_level=logging.WARNING,
                 log_to_driver=False, configure_logging=True)
    else:
        start_local_ray(settings.ray_namespace, configure_logging=True, resources=local_resources(settings))
    if settings.shard_resource and settings.shard_resource not in ray.cluster_resources():
        # Not fatal: an autoscaling cluster adds shard nodes when shards ask for them.
        log.warning("no node of the Ray cluster offers the %r resource (SPOTLESS_SHARD_RESOURCE): "
                    "shard actors wait until one does", settings.shard_resource)


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
    or its node is lost (it then reloads its entities from PostgreSQL).

    Placement: no CPU is reserved (a shard is mostly waiting on I/O, and CPU-bound work such as an
    STRtree rebuild runs in its own thread); one unit of `shard_resource` when set, so only nodes
    that offer it host shards and a node's units cap how many it hosts; `shard_memory_mb` reserved
    so Ray does not pack more shards on a node than its memory holds; and `shard_scheduling`,
    SPREAD by default, so consecutive shards land on different nodes and one lost node takes only
    its share. A restarted shard is placed by the same rules on a node that is still alive."""
    options: dict[str, object] = {
        "name": name, "namespace": settings.ray_namespace, "get_if_exists": True,
        "lifetime": "detached", "max_restarts": -1, "max_task_retries": max_task_retries,
        "max_concurrency": max_concurrency, "num_cpus": 0,
        "scheduling_strategy": settings.shard_scheduling,
    }
    if settings.shard_resource:
        options["resources"] = {settings.shard_resource: 1}
    if settings.shard_memory_mb:
        options["memory"] = settings.shard_memory_mb * 2**20
    return options


def unreachable_dependency(exc: Exception) -> Unavailable | None:
    """The 503 for an error that says a dependency is away rather than that we have a bug."""
    if database_unreachable(exc):  # also when a shard actor raised it (RayTaskError keeps the type)
        return Unavailable("the database is not reachable; try again shortly", dependency="database",
                           retry_after_s=2)
    if isinstance(exc, RayActorError | RaySystemError | GetTimeoutError):
        return Unavailable("a shard actor is restarting; try again shortly", dependency="actors",
                           retry_after_s=2)
    return None
