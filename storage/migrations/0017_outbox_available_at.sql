-- An outbox row may be held back until a moment: the relay publishes only rows whose
-- `available_at` is null or past. Chat push requests are written with the message and held for
-- a second, so that the conversation shard can withdraw the ones whose recipient turns out to be
-- watching the conversation (it asks after acknowledging, off the send's critical path).
ALTER TABLE outbox ADD COLUMN available_at timestamptz;
