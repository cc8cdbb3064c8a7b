"""The worker's activity sweeper checks the sockets that are due a ping or a close, a slice at a
time, so that a pass never holds the worker's other work (frames, fan-out) for long, and it
leaves the sockets that are not due alone, so that a pass costs what is due, not a visit to
every socket."""

import asyncio
import time

from core.settings import Settings
from edge.realtime.connection import SWEEP_SLICE, watch_activity

FAST = Settings(realtime_pong_timeout_s=0.2)  # a pass every 50 ms


class Record:
    """What the sweeper and the other work did, in order, and when the first pass was over."""

    def __init__(self, sockets: int) -> None:
        self.log: list[object] = []
        self.left = sockets
        self.first_pass_done = asyncio.Event()


class Probe:
    """Stands for a connection: due at `due` (time.monotonic()); records when the sweeper
    checked it, and is then not due again for a minute (as a ping waits for its pong)."""

    def __init__(self, record: Record, due: float = 0.0) -> None:
        self.record = record
        self.due = due
        self.closing = False

    def activity_due(self) -> float:
        return self.due

    def check_activity(self, now: float) -> None:
        assert now >= self.due, "checked before it was due"
        self.due = now + 60
        self.record.log.append(self)
        self.record.left -= 1
        if self.record.left == 0:
            self.record.first_pass_done.set()


async def test_a_sweep_checks_every_due_socket_once_and_lets_other_work_run_between_slices():
    # given more sockets due than three slices, in two apps
    record = Record(SWEEP_SLICE * 3 + 7)
    log = record.log
    probes = [Probe(record) for _ in range(record.left)]
    connections = {"app-a": set(probes[:100]), "app-b": set(probes[100:])}

    async def other_work() -> None:  # a frame handled whenever the worker gets a turn
        while True:
            log.append("other")
            await asyncio.sleep(0)

    sweeper = asyncio.get_running_loop().create_task(watch_activity(connections, FAST))
    other = asyncio.get_running_loop().create_task(other_work())
    try:
        await asyncio.wait_for(record.first_pass_done.wait(), 10)
    finally:
        sweeper.cancel()
        other.cancel()
    first_pass = [entry for entry in log if entry != "other"][:len(probes)]
    # then the first pass checked each socket exactly once
    assert len(set(map(id, first_pass))) == len(probes)
    # and never more than a slice of sockets went by without the other work getting a turn
    runs, run = [], 0
    for entry in log:
        if entry == "other":
            runs.append(run)
            run = 0
        else:
            run += 1
    runs.append(run)
    assert max(runs) <= SWEEP_SLICE
    assert sum(1 for r in runs if r) >= 4  # the pass was split, not one block


async def test_a_socket_that_closes_during_a_sweep_is_not_checked_after_it_closed():
    # given two slices of sockets due, one of which will close while the sweeper lets others run
    sockets = SWEEP_SLICE * 2
    record = Record(sockets - 1)  # the pass is over when all but the closed one were checked
    group = {Probe(record) for _ in range(sockets)}
    closing: list[Probe] = []

    async def close_one_between_slices() -> None:  # runs whenever the sweeper lets others run
        while True:
            if len(record.log) >= SWEEP_SLICE:  # the first slice is done
                unchecked = [probe for probe in group if probe not in record.log]
                closing.append(unchecked[0])
                group.discard(unchecked[0])  # as the hub forgets a socket that closed
                return
            await asyncio.sleep(0)

    closer = asyncio.get_running_loop().create_task(close_one_between_slices())
    sweeper = asyncio.get_running_loop().create_task(watch_activity({"app": group}, FAST))
    try:
        await asyncio.wait_for(record.first_pass_done.wait(), 10)
        await closer
    finally:
        sweeper.cancel()
    # then every other socket was checked once in that pass, and the closed one was not
    assert closing[0] not in record.log and len(set(map(id, record.log))) == sockets - 1


async def test_sockets_that_are_not_due_are_left_alone_and_checked_once_they_are():
    # given a thousand quiet sockets due in a minute, and one due in 0.2 s
    record = Record(1)
    later = {Probe(record, due=time.monotonic() + 60) for _ in range(1000)}
    soon = Probe(record, due=time.monotonic() + 0.2)
    sweeper = asyncio.get_running_loop().create_task(watch_activity({"app": {soon, *later}}, FAST))
    try:
        # when the sweeper has run several passes (one each 50 ms)
        await asyncio.wait_for(record.first_pass_done.wait(), 10)
        await asyncio.sleep(0.3)
    finally:
        sweeper.cancel()
    # then only the one that fell due was checked, once, and not before it was due (Probe asserts)
    assert record.log == [soon]


async def test_a_socket_heard_from_after_it_was_queued_is_checked_at_its_new_time_not_before():
    # given a socket due in 0.1 s that is heard from before then (its due time moves to +0.4 s)
    record = Record(1)
    probe = Probe(record, due=time.monotonic() + 0.1)
    sweeper = asyncio.get_running_loop().create_task(watch_activity({"app": {probe}}, FAST))
    try:
        await asyncio.sleep(0.06)  # the first pass has queued it
        moved_to = probe.due = time.monotonic() + 0.4
        # then it is checked once, at or after its new time (the Probe refuses an early check)
        await asyncio.wait_for(record.first_pass_done.wait(), 10)
    finally:
        sweeper.cancel()
    assert record.log == [probe] and time.monotonic() >= moved_to
