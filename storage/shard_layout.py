"""The shard layout: how many shards of each kind every process routes by, and its changes.

One row per set of shards (kind and Ray name prefix) in `shard_layouts`. The first process to
ask writes the count its settings give; from then on every process routes by the row, never by
its own settings, so two processes can never split ownership of an entity. Only a rebalance
changes a row, in two steps: `begin_change` records the count it moves to (`pending_count`),
`commit_change` makes it current and bumps the epoch. See docs/decisions/0018-live-resharding.md.

This module never talks to Ray or NATS: announcing a committed change is the caller's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from core.errors import Conflict, Invalid
from storage import audit

KINDS = ("spatial", "presence", "conversations", "presence-channels")
MAX_SHARDS = 1024

_COLUMNS = "kind, prefix, shard_count, pending_count, epoch, changed_by, changed_at"


@dataclass(frozen=True)
class Layout:
    kind: str
    prefix: str
    shard_count: int
    pending_count: int | None
    epoch: int
    changed_by: str
    changed_at: datetime

    @property
    def counts(self) -> set[int]:
        """The counts whose shards may serve right now: the current one and, during a
        rebalance, the one it moves to."""
        return {self.shard_count} | ({self.pending_count} if self.pending_count else set())


def _layout(row: dict[str, Any]) -> Layout:
    return Layout(row["kind"], row["prefix"], row["shard_count"], row["pending_count"], row["epoch"],
                  row["changed_by"], row["changed_at"])


def check_count(kind: str, shard_count: int) -> None:
    if kind not in KINDS:
        raise Invalid(f"unknown shard kind {kind!r}; one of {', '.join(KINDS)}", field="kind")
    if not 1 <= shard_count <= MAX_SHARDS:
        raise Invalid(f"a shard count is between 1 and {MAX_SHARDS}", field=kind)


async def read_layout(kind: str, prefix: str, *, default_count: int) -> Layout:
    """The layout of one set of shards; the first reader writes `default_count` (its settings)."""
    check_count(kind, default_count)
    db = connections.get("default")
    for _ in range(3):
        # The CTE's SELECT does not see its own INSERT, so exactly one branch answers, except
        # when a concurrent first reader committed in between: then ask again.
        rows = await db.execute_query_dict(
            f"""WITH made AS (
                  INSERT INTO shard_layouts (kind, prefix, shard_count, changed_by)
                  VALUES ($1, $2, $3, 'settings') ON CONFLICT (kind, prefix) DO NOTHING
                  RETURNING {_COLUMNS})
                SELECT {_COLUMNS} FROM made
                UNION ALL SELECT {_COLUMNS} FROM shard_layouts WHERE kind = $1 AND prefix = $2""",
            [kind, prefix, default_count])
        if rows:
            return _layout(rows[0])
    raise Conflict("the shard layout is being written by another process; try again", code="retry")


async def begin_change(kind: str, prefix: str, *, shard_count: int, default_count: int,
                       changed_by: str) -> Layout:
    """Record that this set of shards is moving to `shard_count` (shards of that count may now
    serve); returns the layout with `pending_count` set. A pending change to another count is
    replaced: the operator's latest word wins, and `commit_change` checks the epoch."""
    check_count(kind, shard_count)
    current = await read_layout(kind, prefix, default_count=default_count)
    if current.shard_count == shard_count and current.pending_count is None:
        return current
    async with in_transaction() as tx:
        rows = await tx.execute_query_dict(
            f"""UPDATE shard_layouts SET pending_count = $3, changed_by = $4, changed_at = now()
                WHERE kind = $1 AND prefix = $2 RETURNING {_COLUMNS}""",
            [kind, prefix, shard_count, changed_by[:200]])
        await audit.record(actor_id=None, action="shards.rebalance.begin", entity_type="shard_layout",
                           entity_id=f"{kind}/{prefix}", before={"shard_count": current.shard_count,
                                                                  "epoch": current.epoch},
                           after={"pending_count": shard_count, "by": changed_by}, using=tx)
    return _layout(rows[0])


async def commit_change(kind: str, prefix: str, *, epoch: int, changed_by: str) -> Layout:
    """Make the pending count current (epoch + 1). Refused when the layout moved since `epoch`
    or nothing is pending, so two rebalances can never both commit."""
    async with in_transaction() as tx:
        rows = await tx.execute_query_dict(
            f"""UPDATE shard_layouts SET shard_count = pending_count, pending_count = NULL,
                       epoch = epoch + 1, changed_by = $4, changed_at = now()
                WHERE kind = $1 AND prefix = $2 AND epoch = $3 AND pending_count IS NOT NULL
                RETURNING {_COLUMNS}""",
            [kind, prefix, epoch, changed_by[:200]])
        if not rows:
            raise Conflict(f"the {kind} layout changed while rebalancing; run the rebalance again",
                           code="layout_changed")
        layout = _layout(rows[0])
        await audit.record(actor_id=None, action="shards.rebalance.commit", entity_type="shard_layout",
                           entity_id=f"{kind}/{prefix}", before={"epoch": epoch},
                           after={"shard_count": layout.shard_count, "epoch": layout.epoch,
                                  "by": changed_by}, using=tx)
    return layout


async def abandon_change(kind: str, prefix: str, *, epoch: int) -> None:
    """Forget a pending count (a rebalance that failed before committing)."""
    await connections.get("default").execute_query(
        "UPDATE shard_layouts SET pending_count = NULL WHERE kind = $1 AND prefix = $2 AND epoch = $3",
        [kind, prefix, epoch])


async def counts_in_force(conn: Any, kind: str, prefix: str) -> set[int] | None:
    """For shards on plain asyncpg (`conn` a connection or pool): the counts whose shards may
    serve now, or None when the set has no layout row yet."""
    row = await conn.fetchrow(
        "SELECT shard_count, pending_count FROM shard_layouts WHERE kind = $1 AND prefix = $2", kind, prefix)
    if row is None:
        return None
    return {int(row["shard_count"])} | ({int(row["pending_count"])} if row["pending_count"] else set())
