"""The worker's activity sweeper checks every socket, a slice at a time, so that a pass over
thousands of sockets never holds the worker's other work (frames, fan-out) for long."""

import asyncio

from core.settings import Settings
from edge.realtime.connection import SWEEP_SLICE, watch_activity


class Record:
    """What the sweeper and the other work did, in order, and when the first pass was over."""

    def __init__(self, sockets: int) -> None:
        self.log: list[object] = []
        self.left = sockets
        self.first_pass_done = asyncio.Event()


class Probe:
    """Stands for a connection: records when the sweeper checked it."""

    def __init__(self, record: Record) -> None:
        self.record = record

    def check_activity(self, now: float) -> None:
        self.record.log.append(self)
        self.record.left -= 1
        if self.record.left == 0:
            self.record.first_pass_done.set()


async def test_a_sweep_checks_every_socket_once_and_lets_other_work_run_between_slices():
    # given more sockets than three slices, in two apps
    record = Record(SWEEP_SLICE * 3 + 7)
    log = record.log
    probes = [Probe(record) for _ in range(record.left)]
    connections = {"app-a": set(probes[:100]), "app-b": set(probes[100:])}
    fast = Settings(realtime_pong_timeout_s=0.2)  # a pass every 50 ms

    async def other_work() -> None:  # a frame handled whenever the worker gets a turn
        while True:
            log.append("other")
            await asyncio.sleep(0)

    sweeper = asyncio.get_running_loop().create_task(watch_activity(connections, fast))
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
    # given two slices of sockets, one of which will close while the sweeper lets others run
    sockets = SWEEP_SLICE * 2
    record = Record(sockets - 1)  # the pass is over when all but the closed one were checked
    group = {Probe(record) for _ in range(sockets)}
    closing = list(group)[SWEEP_SLICE]  # the sweep goes in the set's order: the second slice

    async def close_it_between_slices() -> None:  # runs whenever the sweeper lets others run
        while True:
            if len(record.log) >= SWEEP_SLICE:  # the first slice is done
                group.discard(closing)  # as the hub forgets a socket that closed
                return
            await asyncio.sleep(0)

    closer = asyncio.get_running_loop().create_task(close_it_between_slices())
    sweeper = asyncio.get_running_loop().create_task(
        watch_activity({"app": group}, Settings(realtime_pong_timeout_s=0.2)))
    try:
        await asyncio.wait_for(record.first_pass_done.wait(), 10)
        await closer
    finally:
        sweeper.cancel()
    # then every other socket was checked once in that pass, and the closed one was not
    first_pass = record.log[:sockets - 1]
    assert closing not in first_pass and len(set(map(id, first_pass))) == sockets - 1
