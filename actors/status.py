"""`spotless actors status`: every shard actor of each kind, where it runs and what it holds.

Each shard answers `describe()` with its entity count plus `process_facts()` (node, host, pid,
resident memory), so the report needs nothing but the shards' names, which follow from the
prefixes in the settings and the counts of the shard layout in PostgreSQL (the same names the
edge and workers route to; `layout_counts`).
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from typing import Any

import psutil
import ray

from actors.runtime import shard_name
from core.settings import Settings


def process_facts() -> dict[str, Any]:
    """Where the calling actor runs, its process's priority (nice; 0 unless Ray was started
    without RAY_worker_niceness=0, actors/runtime.py) and how much memory it holds."""
    return {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
            "pid": os.getpid(), "nice": os.nice(0), "rss_bytes": psutil.Process().memory_info().rss}


@dataclass(frozen=True)
class ShardRow:
    kind: str
    name: str
    state: str  # "alive", "not started" (nobody has used it yet) or "no answer: <why>"
    facts: dict[str, Any]


async def layout_counts(settings: Settings) -> dict[str, int]:
    """The shard count of each kind in the current layout (needs the database open)."""
    from actors.layout import default_count, prefix_of
    from storage.shard_layout import KINDS, read_layout

    return {kind: (await read_layout(kind, prefix_of(settings, kind),
                                     default_count=default_count(settings, kind))).shard_count
            for kind in KINDS}


def shard_names(settings: Settings, counts: dict[str, int] | None = None) -> list[tuple[str, str]]:
    """(kind, actor name) of every shard, in a stable order: the counts of the layout when given
    (`layout_counts`), else the settings'."""
    from actors.layout import default_count, prefix_of
    from storage.shard_layout import KINDS

    counts = counts or {}
    return [(kind, shard_name(prefix_of(settings, kind), n, count)) for kind in KINDS
            for count in [counts.get(kind, default_count(settings, kind))] for n in range(count)]


async def shard_status(settings: Settings, *, counts: dict[str, int] | None = None,
                       timeout_s: float = 10.0) -> list[ShardRow]:
    """Ask every shard at once; a shard that is missing or silent is reported, never raised."""

    async def one(kind: str, name: str) -> ShardRow:
        try:
            actor = ray.get_actor(name, namespace=settings.ray_namespace)
        except ValueError:
            return ShardRow(kind, name, "not started", {})
        try:
            facts = await asyncio.wait_for(actor.describe.remote(), timeout_s)
        except Exception as exc:  # a dead or restarting actor: say which, keep going
            return ShardRow(kind, name, f"no answer: {type(exc).__name__}", {})
        return ShardRow(kind, name, "alive", facts)

    return list(await asyncio.gather(*(one(kind, name) for kind, name in shard_names(settings, counts))))


def render(rows: list[ShardRow]) -> str:
    """The table `spotless actors status` prints."""
    lines = [f"{'kind':<18} {'shard':<28} {'state':<12} {'entities':>9} {'rss MiB':>8}  {'host':<20} {'pid':>7} {'nice':>4}  node"]
    for row in rows:
        f = row.facts
        rss = f"{f['rss_bytes'] / 2**20:.0f}" if "rss_bytes" in f else "-"
        lines.append(f"{row.kind:<18} {row.name:<28} {row.state:<12} {f.get('entities', '-')!s:>9} {rss:>8}  "
                     f"{f.get('host', '-'):<20} {f.get('pid', '-')!s:>7} {f.get('nice', '-')!s:>4}  "
                     f"{f.get('node_id', '-')}")
    alive = [r for r in rows if r.state == "alive"]
    lines.append(f"{len(alive)} of {len(rows)} shards alive; "
                 f"{sum(r.facts.get('entities', 0) for r in alive)} entities; "
                 f"{sum(r.facts.get('rss_bytes', 0) for r in alive) / 2**20:.0f} MiB resident")
    return "\n".join(lines)
