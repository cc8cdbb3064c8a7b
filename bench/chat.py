"""Benchmark: chat end to end, socket to socket, at 1,000 and 5,000 sockets.

Starts a stack the way `spotless dev` does (a fresh database on DATABASE_URL's server, NATS_URL
or its own nats-server, a local Ray, and `spotless edge` as its own process), or drives a
running one (`--url`, with DATABASE_URL naming that stack's database). It makes M bookings
(conversations), opens N Pusher sockets (each conversation's client and cleaner, subscribed to
its presence channel), then sends chat messages at a steady open-loop rate, alternating
sender, over REST or (`--via socket`) over the sender's socket, and measures:

- end-to-end latency: the send leaving this process -> the message's frame reaching this
  process on the other party's socket (p50 / p99 / p999), and the acknowledgement latency;
- messages/s persisted (acknowledged 201s over the sending window);
- lost and duplicated messages, counted by seq: every socket must see 1, 2, 3, ... of its
  conversation exactly once, every acknowledged message must reach the other party, and
  PostgreSQL must hold each conversation's seqs without a gap;
- memory per connection: the edge process's RSS growth over opening the sockets, per socket;
- what PostgreSQL added: the conversation shards' batch statements per row, the ones over 20 ms
  (a commit waits for the disk, whose flushes stall now and then on some machines), and the e2e
  p99 of the messages that overlapped none of those.

The sockets are `bench.lean_socket.LeanSocket`s: one asyncio protocol each, frames timed and
handled as they arrive, so the load generator takes as little as it can of the cores it shares
with the stack and adds as little as it can to the latency it measures. REST sends go the same
way through `bench.lean_http.LeanPool` (keep-alive connections, a request written as bytes, the
answer parsed as it arrives); `--rest-client aiohttp` sends them with aiohttp instead.

The baseline, in the same run and on the same sockets, is the same traffic at a trickle
(`--baseline-rate`): what one message costs when nothing queues. The load average is printed
with the figures, since the machine may be shared. `--repeat N` runs the load row N times on the
same stack and sockets and prints the median, quartiles and range of their p99s, and how many
are under `--target-p99` (the issue's 25 ms): one row of 8 s is one draw of a noisy figure. Not
a test.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test NATS_URL=nats://127.0.0.1:4222 \
        .venv/bin/python -m bench.chat --sockets 1000 5000 --rate 2000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import ray

from actors.conversations import SLOW_WRITE_MS
from bench.lean_http import LeanPool
from bench.lean_socket import LeanSocket
from bench.stack import (
    Conversation,
    check_database,
    pct,
    run_cleanups,
    seed_conversations,
    start_services,
    subscribe_frame,
    subscribed,
)
from core import collector
from core.realtime import RealtimeApp, parse_apps
from core.settings import Settings
from edge.realtime.signing import channel_auth
from storage.db import close_database, open_database
from tests.stack import EdgeProcess, start_edge


@dataclass
class Listener:
    """One party's socket on a conversation: the seqs it saw, in order."""

    conversation: Conversation
    party: int  # 0: client, 1: cleaner
    ws: LeanSocket | None = None
    last_seq: int = 0
    gaps: int = 0
    duplicates: int = 0

    @property
    def closed_code(self) -> int | None:
        """Set when the socket closed (by either side) before the end."""
        return self.ws.close_code if self.ws is not None else None


@dataclass
class Run:
    sent: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)  # key -> (t0, sender party)
    acked: dict[tuple[str, str], int] = field(default_factory=dict)  # key -> seq
    ack_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    e2e_spans: list[tuple[float, float]] = field(default_factory=list)  # (sent, received), perf_counter s
    delivered: set[tuple[str, str]] = field(default_factory=set)
    failed: int = 0
    first_error: str = ""


def rss_mib(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def cpu_seconds(edge_pid: int | None) -> dict[str, float]:
    """CPU time so far of the edge (with its children), the conversation shards and this process."""
    out = {"edge": 0.0, "shards": 0.0, "bench": 0.0}
    procs: list[tuple[str, psutil.Process]] = [("bench", psutil.Process())]
    if edge_pid:
        edge = psutil.Process(edge_pid)
        procs += [("edge", p) for p in [edge, *edge.children(recursive=True)]]
    for proc in psutil.process_iter(["cmdline"]):
        if "ray::ConversationShard" in " ".join(proc.info["cmdline"] or []):
            procs.append(("shards", proc))
    for group, proc in procs:
        try:
            times = proc.cpu_times()
            out[group] += times.user + times.system
        except psutil.Error:
            pass
    return out


async def open_listener(url: str, app: RealtimeApp, listener: Listener, run_of: list[Run]) -> None:
    # No WebSocket-level pings, as pusher-js and the other Pusher clients send none: liveness is
    # the protocol's pusher:ping, answered in `on_frame`.
    ws = await LeanSocket.connect(f"{url}/app/{app.key}?protocol=7")
    established = json.loads(await ws.recv())
    socket_id = json.loads(established["data"])["socket_id"]
    conversation = listener.conversation
    channel = f"presence-conversation.{conversation.id}"
    user_id = conversation.users[listener.party]
    channel_data = json.dumps({"user_id": user_id, "user_info": {"role": ("client", "cleaner")[listener.party]}})
    ws.send(subscribe_frame(channel, {"auth": channel_auth(app, socket_id, channel, channel_data),
                                      "channel_data": channel_data}))
    await subscribed(ws.recv)
    listener.ws = ws
    ws.on_text = lambda raw, now: on_frame(listener, run_of, raw, now)


def on_frame(listener: Listener, run_of: list[Run], raw: str, now: float) -> None:
    """Answer pings; check every chat message's seq; time the ones sent by the other party
    (`now`: when the frame reached this process)."""
    frame = json.loads(raw)
    event = frame["event"]
    if event == "chat.message":
        message = json.loads(frame["data"])
        seq = message["seq"]
        if seq <= listener.last_seq:
            listener.duplicates += 1
            return
        if seq != listener.last_seq + 1:
            listener.gaps += seq - listener.last_seq - 1
        listener.last_seq = seq
        run = run_of[0]
        key = (message["conversation_id"], message["client_msg_id"])
        sent = run.sent.get(key)
        if sent is not None and sent[1] != listener.party:
            run.e2e_ms.append((now - sent[0]) * 1000)
            run.e2e_spans.append((sent[0], now))
            run.delivered.add(key)
    elif event == "chat.sent":  # a send over this socket, acknowledged
        ack = json.loads(frame["data"])
        run = run_of[0]
        key = (listener.conversation.id, ack["client_msg_id"])
        if ack["created"] and key in run.sent:
            run.ack_ms.append((now - run.sent[key][0]) * 1000)
            run.acked[key] = ack["seq"]
    elif event in ("chat.send_failed", "pusher:error"):
        run_of[0].failed += 1
        run_of[0].first_error = run_of[0].first_error or raw[:300]
    elif event == "pusher:ping" and listener.ws is not None:
        listener.ws.send('{"event":"pusher:pong","data":{}}')


async def drive(url: str, conversations: list[Conversation], run: Run, *, rate: float, seconds: float,
                offset: int, senders: dict[tuple[str, int], Listener] | None = None,
                rest_client: str = "lean") -> float:
    """Send at `rate` messages/s for `seconds` (open loop); returns the window's length. With
    `senders` (each party's socket) the sends go over the socket as `client-chat-message` and
    are acknowledged by `chat.sent` on it; otherwise over REST, with `bench/lean_http.py`'s pool
    or (`rest_client="aiohttp"`) aiohttp's."""
    connector = aiohttp.TCPConnector(limit=512)
    tasks: list[asyncio.Task[None]] = []
    pool = LeanPool(url, limit=512)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as http:

        def message(n: int) -> tuple[Conversation, int, tuple[str, str], dict[str, str]]:
            """The n-th send of the row: its conversation, the sending party, its key, its body;
            timed from here."""
            conversation = conversations[n % len(conversations)]
            party = (n // len(conversations)) % 2
            key = (conversation.id, f"b{offset + n}")
            run.sent[key] = (time.perf_counter(), party)
            return conversation, party, key, {"client_msg_id": key[1], "body": f"hello {n}"}

        def failed(exc: Exception) -> None:
            run.failed += 1
            run.first_error = run.first_error or repr(exc)[:300]

        def send_over_socket(n: int) -> None:
            assert senders is not None
            conversation, party, _, data = message(n)
            sender = senders[(conversation.id, party)]
            assert sender.ws is not None
            sender.ws.send(json.dumps({
                "event": "client-chat-message", "channel": f"presence-conversation.{conversation.id}",
                "data": data}))

        def answered(key: tuple[str, str], status: int, body: bytes, now: float) -> None:
            try:
                if status == 201:
                    run.ack_ms.append((now - run.sent[key][0]) * 1000)
                    run.acked[key] = json.loads(body)["data"]["seq"]
                    return
                raise RuntimeError(f"{status}: {body[:200]!r}")
            except Exception as exc:
                failed(exc)

        def send_lean(n: int) -> None:
            conversation, party, key, data = message(n)
            pool.post_json(f"/api/v1/conversations/{conversation.id}/messages", data,
                           lambda status, body, now: answered(key, status, body, now),
                           token=conversation.tokens[party])

        async def send_one(n: int) -> None:
            conversation, party, key, data = message(n)
            try:
                async with http.post(f"/api/v1/conversations/{conversation.id}/messages",
                                     headers={"Authorization": f"Bearer {conversation.tokens[party]}"},
                                     json=data) as response:
                    answered(key, response.status, await response.read(), time.perf_counter())
            except Exception as exc:
                failed(exc)

        started = time.perf_counter()
        issued = 0
        total = int(rate * seconds)
        try:
            while issued < total:
                due = min(total, int((time.perf_counter() - started) * rate) + 1)
                for n in range(issued, due):
                    if senders is not None:  # a socket send is written at once: no task needed
                        send_over_socket(n)
                    elif rest_client == "lean":
                        send_lean(n)
                    else:
                        tasks.append(asyncio.get_running_loop().create_task(send_one(n)))
                issued = due
                await asyncio.sleep(0.002)
            await asyncio.gather(*tasks)
            await pool.drain()
        finally:
            pool.close()
        return time.perf_counter() - started


async def settle(run: Run, wait_s: float = 20) -> None:
    deadline = time.perf_counter() + wait_s
    while time.perf_counter() < deadline:
        if set(run.acked) <= run.delivered:
            return
        await asyncio.sleep(0.1)


@dataclass
class ShardStats:
    """What the conversation shards report, summed: Ray calls and the messages they carried, and
    their batch statements (how many, total seconds, and the slow ones: [unix time it ended,
    ms, messages])."""

    calls: int = 0
    items: int = 0
    writes: int = 0
    write_s: float = 0.0
    slow_writes: list[list[float]] = field(default_factory=list)


async def shard_stats(settings: Settings) -> ShardStats:
    """The conversation shards' counters, so far."""
    total = ShardStats()
    if not ray.is_initialized():
        return total
    count = settings.conversation_shards
    for shard in range(count):
        try:
            actor = ray.get_actor(f"conversations-{shard}-of-{count}", namespace=settings.ray_namespace)
            stats = await actor.stats.remote()
        except ValueError:
            continue
        total.calls += stats["calls"]
        total.items += stats["items"]
        total.writes += stats.get("writes", 0)
        total.write_s += stats.get("write_s", 0.0)
        total.slow_writes += stats.get("slow_writes", [])
    return total


def postgres_held(run: Run, before: ShardStats, after: ShardStats) -> str:
    """One line on what PostgreSQL added to the row: its batch statements, the ones slower than
    the shard's SLOW_WRITE_MS, and the e2e p99 of the messages whose way overlapped none of those
    (a message overlaps a statement when it was sent before the statement ended and received
    after it began): how much of the tail the database's stalls made. The others still include
    those that queued behind the backlog a stall left."""
    writes = after.writes - before.writes
    if not writes:
        return "no batch statements"
    seen = {tuple(w) for w in before.slow_writes}
    clock = time.time() - time.perf_counter()  # the shard's wall clock -> this process's perf_counter
    slow = sorted((end - clock - ms / 1000, end - clock) for end, ms, _ in
                  (w for w in after.slow_writes if tuple(w) not in seen))
    mean = (after.write_s - before.write_s) * 1000 / writes
    line = f"PostgreSQL: {writes:,} batch statements, mean {mean:.1f} ms; {len(slow)} over {SLOW_WRITE_MS:g} ms"
    if not slow:
        return line
    longest = max(end - start for start, end in slow) * 1000
    clear = [(received - sent) * 1000 for sent, received in run.e2e_spans
             if not any(start <= received and end >= sent for start, end in slow)]
    overlapped = 1 - len(clear) / max(len(run.e2e_spans), 1)
    return (f"{line} (longest {longest:.0f} ms), overlapped by {overlapped:.1%} of the messages; "
            f"e2e p99 of the others {pct(clear, 99):.1f} ms")


async def one_size(args: argparse.Namespace, url: str, app: RealtimeApp, conversations: list[Conversation],
                   edge_pid: int | None, settings: Settings, offset: int) -> None:
    listeners = [Listener(c, party) for c in conversations for party in (0, 1)]
    run_of = [Run()]
    rss_before = rss_mib(edge_pid) if edge_pid else None
    opening = asyncio.Semaphore(64)

    async def open_one(listener: Listener) -> None:
        async with opening:
            await open_listener(url.replace("http", "ws", 1), app, listener, run_of)

    started = time.perf_counter()
    await asyncio.gather(*(open_one(listener) for listener in listeners))
    opened_s = time.perf_counter() - started
    # This process measures: its own collector pausing over thousands of sockets' objects (or
    # over a young generation of 50,000) would show up as latency that the stack never had. So it
    # runs without one while it measures, and collects between sizes.
    collector.tune()
    gc.disable()
    await asyncio.sleep(1)
    memory = ""
    if edge_pid and rss_before is not None:
        per = (rss_mib(edge_pid) - rss_before) * 1024 / len(listeners)
        memory = f"; edge RSS +{per:.1f} KiB per connection"
    print(f"\n{len(listeners):,} sockets on {len(conversations):,} conversations opened and subscribed "
          f"in {opened_s:.1f}s{memory}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'row':>9} {'target/s':>8} {'sent':>7} {'acked/s':>8} {'e2e p50':>8} {'p99':>7} {'p999':>7} "
          f"{'ack p50':>8} {'ack p99':>8} {'msgs/call':>9} {'lost':>5} {'dup':>4} {'gaps':>5} {'failed':>6} "
          f"{'load':>5}")
    # Warm up: one message per conversation loads it into its shard (not measured).
    warm = Run()
    run_of[0] = warm
    await drive(url, conversations, warm, rate=min(args.rate, 500), seconds=len(conversations) / min(args.rate, 500),
                offset=offset)
    offset += len(conversations) + 1
    await settle(warm)
    load_p99s: list[float] = []
    for label, rate, seconds in (("baseline", args.baseline_rate, args.baseline_seconds),
                                 *[("load", args.rate, args.seconds)] * args.repeat):
        run = Run()
        run_of[0] = run
        before = await shard_stats(settings)
        cpu_before = cpu_seconds(edge_pid)
        senders = {(lst.conversation.id, lst.party): lst for lst in listeners} if args.via == "socket" else None
        window = await drive(url, conversations, run, rate=rate, seconds=seconds, offset=offset, senders=senders,
                             rest_client=args.rest_client)
        offset += int(rate * seconds) + 1
        await settle(run)
        after = await shard_stats(settings)
        cpu = {k: (v - cpu_before[k]) * 1000 / max(len(run.acked), 1) for k, v in cpu_seconds(edge_pid).items()}
        lost = len(set(run.acked) - run.delivered)
        per_call = (after.items - before.items) / max(after.calls - before.calls, 1)
        print(f"{label:>9} {rate:>8.0f} {len(run.sent):>7} {len(run.acked) / window:>8.0f} "
              f"{pct(run.e2e_ms, 50):>8.1f} {pct(run.e2e_ms, 99):>7.1f} {pct(run.e2e_ms, 99.9):>7.1f} "
              f"{pct(run.ack_ms, 50):>8.1f} {pct(run.ack_ms, 99):>8.1f} {per_call:>9.1f} {lost:>5} "
              f"{sum(s.duplicates for s in listeners):>4} {sum(s.gaps for s in listeners):>5} {run.failed:>6} "
              f"{os.getloadavg()[0]:>5.1f}")
        if label == "load":
            load_p99s.append(pct(run.e2e_ms, 99))
        print(f"{'':>9} CPU ms per acknowledged message: edge {cpu['edge']:.2f}, conversation shards "
              f"{cpu['shards']:.2f}, this client {cpu['bench']:.2f}")
        print(f"{'':>9} {postgres_held(run, before, after)}")
        if run.first_error:
            print(f"          first failure: {run.first_error}")
        closed = Counter(lst.closed_code for lst in listeners if lst.closed_code is not None)
        if closed:
            print(f"          sockets closed before the end: {sum(closed.values())} (close codes {dict(closed)}; "
                  "1006: the connection dropped); what they missed counts as lost: "
                  "this benchmark does not reconnect")
    if len(load_p99s) > 1:
        ordered = sorted(load_p99s)
        quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 2 else ordered
        print(f"{'':>9} e2e p99 of the {len(ordered)} load rows: median {statistics.median(ordered):.1f}, "
              f"quartiles {quartiles[0]:.1f} / {quartiles[-1]:.1f}, range {ordered[0]:.1f}-{ordered[-1]:.1f}; "
              f"under {args.target_p99:g} ms in {sum(p < args.target_p99 for p in ordered)} of {len(ordered)}")
    stored, broken = await check_database([c.id for c in conversations])
    print(f"PostgreSQL: {stored:,} messages in these conversations, {broken} with a gap or repeat in seq; "
          f"milliseconds throughout; e2e = the send ({'over the socket' if args.via == 'socket' else 'REST'}) "
          "leaving this process -> the message's frame reaching it on the other party's socket")
    for listener in listeners:
        if listener.ws is not None:
            await listener.ws.close()
    gc.enable()


async def main(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 5,000 sockets; the edge inherits it
    server_url = os.environ["DATABASE_URL"]
    cleanups: list[Any] = []
    tmp = Path(tempfile.mkdtemp(prefix="spotless-bench-chat-"))
    try:
        if args.url:
            settings = Settings(database_url=server_url)
            url, edge_pid = args.url.rstrip("/"), args.edge_pid
        else:
            services = await start_services(server_url, os.environ.get("NATS_URL", ""), tmp,
                                            namespace_prefix="bench-chat")
            cleanups.extend(services.cleanups)
            database_url, nats_url, namespace = services.database_url, services.nats_url, services.namespace
            env = {"DATABASE_URL": database_url, "NATS_URL": nats_url, "SPOTLESS_DATA_DIR": str(tmp / "data"),
                   "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "SPOTLESS_RAY_NAMESPACE": namespace,
                   "SPOTLESS_CONVERSATION_SHARDS": str(args.shards), "SPOTLESS_LOG_LEVEL": "WARNING"}
            settings = Settings(database_url=database_url, nats_url=nats_url, ray_namespace=namespace,
                                conversation_shards=args.shards)
            edge: EdgeProcess = await asyncio.to_thread(start_edge, env, tmp, workers=args.edge_workers)
            cleanups.append(edge.stop)
            url, edge_pid = edge.url, edge.proc.pid
        await open_database(settings)
        cleanups.append(close_database)
        app = parse_apps(settings.realtime_apps)[0]
        via = f"rest ({args.rest_client} client)" if args.via == "rest" else args.via
        stack = ("the running stack's edge workers and conversation shards" if args.url
                 else f"{args.edge_workers} edge worker(s), {args.shards} conversation shards")
        print(f"chat end to end against {url}: sends over {via}, {stack}, "
              f"{args.seconds:.0f} s at {args.rate:.0f} msg/s after {args.baseline_seconds:.0f} s at "
              f"{args.baseline_rate:.0f} msg/s (baseline); load average {os.getloadavg()[0]:.1f}")
        offset = 0
        for sockets in args.sockets:
            conversations = await seed_conversations(sockets // 2)
            await one_size(args, url, app, conversations, edge_pid, settings, offset)
            offset += 10_000_000
    finally:
        await run_cleanups(cleanups)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rate", type=float, default=2000, help="messages/s during the load row")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="load rows per size, on the same stack and sockets, with their p99s summarised")
    parser.add_argument("--target-p99", type=float, default=25.0,
                        help="with --repeat: count the load rows whose e2e p99 is under this (ms)")
    parser.add_argument("--baseline-rate", type=float, default=50)
    parser.add_argument("--baseline-seconds", type=float, default=4.0)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--edge-workers", type=int, default=1,
                        help="Sanic workers of the edge this bench starts (production runs one per core)")
    parser.add_argument("--via", choices=["rest", "socket"], default="rest",
                        help="send over REST (POST .../messages) or the socket (client-chat-message)")
    parser.add_argument("--rest-client", choices=["lean", "aiohttp"], default="lean",
                        help="with --via rest: bench/lean_http.py's keep-alive pool, or aiohttp's")
    parser.add_argument("--url", default="", help="a running stack's edge (DATABASE_URL: its database)")
    parser.add_argument("--edge-pid", type=int, default=None, help="with --url: the edge's pid, for memory")
    asyncio.run(main(parser.parse_args()))
