-- The shard layout: how many shards of each kind (per Ray name prefix) every process routes by,
-- changed only by `spotless actors rebalance` (docs/decisions/0018-live-resharding.md).
-- `pending_count` is set while a rebalance moves a kind to a new count; `epoch` grows by one
-- with every committed change, so a process tells an old layout from a new one.
CREATE TABLE shard_layouts (
    id bigserial PRIMARY KEY,
    kind varchar(32) NOT NULL,
    prefix varchar(64) NOT NULL,
    shard_count integer NOT NULL CHECK (shard_count BETWEEN 1 AND 1024),
    pending_count integer CHECK (pending_count BETWEEN 1 AND 1024),
    epoch bigint NOT NULL DEFAULT 1,
    changed_by varchar(200) NOT NULL DEFAULT '',
    changed_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, prefix)
);
