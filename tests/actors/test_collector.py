"""Every shard actor's process runs with the collector tuned (core/collector.py)."""

from __future__ import annotations

import gc

import ray

from actors.conversations import conversation_shard
from actors.presence import presence_shard
from actors.presence_channels import presence_channel_shard
from actors.spatial import spatial_shard
from core import collector
from core.settings import Settings


def _collector_state(_shard: object) -> tuple[tuple[int, int, int], int]:
    return gc.get_threshold(), gc.get_freeze_count()


async def test_each_kind_of_shard_runs_with_the_collector_tuned(settings: Settings, shard_prefix: str) -> None:
    # given one shard of each kind, in processes of their own
    shards = [factory(settings, 0, count=1, prefix=f"{shard_prefix}-{kind}") for kind, factory in (
        ("conversations", conversation_shard), ("presence", presence_shard),
        ("presence-channels", presence_channel_shard), ("spatial", spatial_shard))]
    try:
        # when each is asked how its process's collector is set
        states = [await shard.__ray_call__.remote(_collector_state) for shard in shards]
        # then each froze its start-up heap and runs on the raised thresholds
        tuned = (collector.YOUNG_THRESHOLD, collector.MIDDLE_THRESHOLD, collector.OLD_THRESHOLD)
        assert [threshold for threshold, _ in states] == [tuned] * 4
        assert all(frozen > 10_000 for _, frozen in states)
    finally:
        for shard in shards:
            ray.kill(shard, no_restart=True)
