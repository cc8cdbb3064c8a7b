"""The shard layout (migration 0016): the shard count of each kind that every process routes by."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class ShardLayout(Model):
    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=32)
    prefix = fields.CharField(max_length=64)  # the Ray name prefix of this set of shards
    shard_count = fields.IntField()
    pending_count = fields.IntField(null=True)  # the count a rebalance in progress moves to
    epoch = fields.BigIntField(default=1)
    changed_by = fields.CharField(max_length=200, default="")
    changed_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "shard_layouts"
        unique_together = (("kind", "prefix"),)
