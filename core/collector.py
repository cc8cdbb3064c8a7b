"""Python's cyclic garbage collector, tuned once in every long-running process: edge workers,
shard actors, job workers.

CPython's default thresholds (700, 10, 10) run a young collection every 700 net allocations of
container objects. Under load, the objects of a message or request in flight (futures, frames,
dicts, tuples) live a few milliseconds, long enough for those frequent collections to find them
alive and promote them, first to the middle generation and then to the oldest; they die soon
after, but the oldest generation counts them as new long-lived objects, and once those reach a
quarter of it CPython runs a full collection, which scans everything the process holds.
Measured in the chat benchmark (bench/README.md): an edge worker holding 2,500 sockets paused
170-380 ms per full collection, several times a minute at 2,000 messages/s, and the load
generator and the conversation shard likewise; those pauses were the whole p99.

With a young threshold of `YOUNG_THRESHOLD` net allocations, objects in flight are freed by
reference counting before any collection sees them, so almost nothing is promoted and a full
collection comes only from real growth (sockets opening, caches filling). Cyclic garbage is
still collected: a young collection runs whenever that many container objects have accumulated
and costs a few milliseconds.

At start-up everything alive (the modules of Ray, Sanic, pydantic, Tortoise: several hundred
thousand objects) is frozen, i.e. never scanned again.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # net allocations of container objects between young collections
MIDDLE_THRESHOLD = 20  # young collections between collections of the middle generation
OLD_THRESHOLD = 10  # middle collections before a full one is considered (CPython's 25% rule also applies)


def tune() -> None:
    """Freeze what the process holds once started and raise the collector's thresholds.
    Idempotent; call it when the process has imported and built what it keeps for its life."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
