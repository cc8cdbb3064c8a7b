"""core/collector.py: objects in flight no longer set off full collections."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A process like an edge worker: a long-lived heap (sockets) built after start-up, then messages
# allocated in batches that live for a few batches. Run in a fresh interpreter so the test
# process's own collector state plays no part; prints how many full collections the churn set off.
WORKLOAD = textwrap.dedent("""
    import collections, gc, sys
    from core import collector
    if sys.argv[1] == "tuned":
        collector.tune()
    else:  # what the edge did before: the start-up heap frozen, CPython's thresholds
        gc.collect()
        gc.freeze()
    sockets = [{"id": i, "channels": [i], "queue": collections.deque()} for i in range(100_000)]
    full = [0]
    gc.callbacks.append(lambda phase, info: full.__setitem__(0, full[0] + (
        phase == "stop" and info["generation"] == 2)))
    inflight = collections.deque()
    for batch in range(10_000):
        inflight.append([{"seq": n, "frame": [n, "hello"]} for n in range(50 + (batch * 37) % 400)])
        if len(inflight) > 4:
            inflight.popleft()
    print(gc.get_threshold()[0], full[0])
""")


def full_collections(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", WORKLOAD, mode], capture_output=True, text=True, check=True)
    young, full = out.stdout.split()
    return int(young), int(full)


def test_messages_in_flight_set_off_no_full_collection_once_tuned() -> None:
    # given the same heap of long-lived sockets and the same stream of short-lived messages
    # when the process runs on CPython's thresholds, and then tuned
    default, tuned = full_collections("default"), full_collections("tuned")
    # then CPython's young collections caught messages alive, promoted them and set off full
    # collections over the whole heap; tuned, the messages die before any collection sees them
    assert default == (700, default[1]) and default[1] >= 3
    assert tuned == (50_000, 0)
