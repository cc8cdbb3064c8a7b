"""Benchmark: what one Ray actor call costs on this machine, the unit every hot path is sized by.

Sequential calls to a no-op async actor (as the shards are), with an empty argument and with
replies of several sizes, printing the round trip's p50 and p99 and the CPU time per call of the
caller and of the actor process. A Ray call's cost is what the edge's coalescing amortises; it
moves between machines (and within minutes on a shared VM), so measure it where you run.

    .venv/bin/python -m bench.ray_call [--calls 600] [--sizes 0 1000 30000 60000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time

import psutil
import ray

from actors.runtime import start_local_ray


@ray.remote
class Echo:
    async def reply(self, size: int) -> bytes:
        return b"x" * size

    def pid(self) -> int:
        return os.getpid()


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def measure(actor: object, size: int, calls: int, actor_process: psutil.Process) -> dict[str, float]:
    for _ in range(min(100, calls)):  # warm up
        await actor.reply.remote(size)  # type: ignore[attr-defined]
    me = psutil.Process()
    trips = []
    mine, theirs = _cpu_s(me), _cpu_s(actor_process)
    for _ in range(calls):
        started = time.perf_counter()
        await actor.reply.remote(size)  # type: ignore[attr-defined]
        trips.append(time.perf_counter() - started)
    trips.sort()
    return {"p50_ms": 1000 * statistics.median(trips), "p99_ms": 1000 * trips[int(len(trips) * 0.99)],
            "caller_us": 1e6 * (_cpu_s(me) - mine) / calls, "actor_us": 1e6 * (_cpu_s(actor_process) - theirs) / calls}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1000, 30_000, 60_000])
    args = parser.parse_args()
    start_local_ray(f"spotless-bench-{secrets.token_hex(3)}")  # the actor at the priority shards run at
    try:
        actor = Echo.remote()  # type: ignore[attr-defined]
        actor_process = psutil.Process(await actor.pid.remote())
        print(f"Ray {ray.__version__}, {args.calls} sequential calls per row, load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"{'reply bytes':>11} | {'p50 ms':>6} {'p99 ms':>6} | {'caller cpu µs':>13} {'actor cpu µs':>12}")
        for size in args.sizes:
            row = await measure(actor, size, args.calls, actor_process)
            print(f"{size:>11,} | {row['p50_ms']:>6.2f} {row['p99_ms']:>6.2f} | "
                  f"{row['caller_us']:>13.0f} {row['actor_us']:>12.0f}", flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
