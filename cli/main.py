"""`spotless <command>`: dev, migrate, seed, edge, admin, worker, relay, actors, users."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
from typing import Any

from core.errors import SpotlessError
from core.settings import get_settings


def _need_database() -> str:
    url = get_settings().database_url
    if not url:
        sys.exit("spotless: DATABASE_URL is not set (use `spotless dev` for the embedded stack)")
    return url


def cmd_migrate(args: argparse.Namespace) -> None:
    from storage.migrate import migrate

    applied = asyncio.run(migrate(_need_database()))
    print(f"migrations applied: {len(applied)}" + "".join(f"\n  {m.version:04d} {m.name}" for m in applied))


def cmd_seed(args: argparse.Namespace) -> None:
    from cli.seed import seed_demo

    if not args.demo:
        sys.exit("spotless seed: say what to seed, e.g. `spotless seed --demo`")
    _need_database()
    try:
        print(asyncio.run(seed_demo(get_settings())))
    except SpotlessError as exc:
        sys.exit(f"spotless seed: {exc.detail}")
    except OSError as exc:  # the database is not reachable
        sys.exit(f"spotless seed: cannot reach the database: {exc}")


def cmd_edge(args: argparse.Namespace) -> None:
    from cli.serve import serve_edge

    serve_edge(get_settings(), host=args.host, port=args.port, workers=args.workers)


def cmd_admin(args: argparse.Namespace) -> None:
    from cli.serve import serve_admin

    serve_admin(get_settings(), host=args.host, port=args.port)


def cmd_worker(args: argparse.Namespace) -> None:
    from core import collector
    from jobs.runner import run_workers

    _need_database()
    collector.tune()  # a long-running process, as the edge's workers and the shards (core/collector.py)
    asyncio.run(run_workers(get_settings(), kinds=args.kinds or ["all"]))


def cmd_dev(args: argparse.Namespace) -> None:
    from cli.dev import run_dev

    sys.exit(run_dev(get_settings(), seed=args.seed))


def cmd_actors_status(args: argparse.Namespace) -> None:
    """Print every shard actor: kind, name, state, entities, memory, host, pid, node."""
    settings = get_settings()
    if not settings.ray_address:
        raise SystemExit("spotless actors status: set RAY_ADDRESS to the cluster's address "
                         "(`spotless dev` prints its local one)")
    from actors.runtime import connect, disconnect
    from actors.status import layout_counts, render, shard_status

    async def run() -> list[Any]:
        counts = None
        if settings.database_url:  # the layout's counts; without a database, the settings'
            from storage.db import close_database, open_database

            await open_database(settings)
            try:
                counts = await layout_counts(settings)
            finally:
                await close_database()
        return await shard_status(settings, counts=counts)

    connect(settings)
    try:
        rows = asyncio.run(run())
    except OSError as exc:
        sys.exit(f"spotless actors status: cannot reach the database: {exc}")
    finally:
        disconnect()
    print(render(rows))
    if any(row.state.startswith("no answer") for row in rows):
        sys.exit(1)


def cmd_actors_rebalance(args: argparse.Namespace) -> None:
    """Change shard counts on the live cluster; one line per kind."""
    settings = get_settings()
    counts = {kind: n for kind, n in (("spatial", args.spatial), ("presence", args.presence),
                                      ("conversations", args.conversations),
                                      ("presence-channels", args.presence_channels)) if n is not None}
    if not counts:
        sys.exit("spotless actors rebalance: say which counts to change, e.g. --conversations 6")
    from storage.shard_layout import check_count

    try:
        for kind, count in counts.items():
            check_count(kind, count)
    except SpotlessError as exc:
        sys.exit(f"spotless actors rebalance: {exc.detail}")
    if not settings.ray_address:
        sys.exit("spotless actors rebalance: set RAY_ADDRESS to the cluster's address")
    _need_database()
    from actors.rebalance import rebalance
    from actors.runtime import connect, disconnect
    from storage.bus import Bus
    from storage.db import close_database, open_database

    async def run() -> list[Any]:
        await open_database(settings)
        bus = Bus(settings.nats_url or "nats://127.0.0.1:4222", name="spotless-rebalance")
        bus.start()
        try:
            if not await bus.wait_connected(5.0):
                print("spotless actors rebalance: NATS unreachable; processes learn the new layout "
                      "from the old shards' \"moved\" answers instead", file=sys.stderr)
            return await rebalance(settings, counts, bus=bus, grace_s=args.grace_s,
                                   changed_by=f"cli:{getpass.getuser()}@{socket.gethostname()}")
        finally:
            await bus.close()
            await close_database()

    connect(settings)
    try:
        changes = asyncio.run(run())
    except SpotlessError as exc:
        sys.exit(f"spotless actors rebalance: {exc.detail}")
    except OSError as exc:
        sys.exit(f"spotless actors rebalance: cannot reach the database: {exc}")
    finally:
        disconnect()
    for change in changes:
        print(change.describe())


def cmd_make_admin(args: argparse.Namespace) -> None:
    from storage import accounts
    from storage.db import close_database, open_database

    async def run() -> None:
        settings = get_settings()
        await open_database(settings, database_url=_need_database())
        try:
            user = await accounts.make_admin(email=args.email)
            print(f"{user.email} is now an admin")
        finally:
            await close_database()

    try:
        asyncio.run(run())
    except SpotlessError as exc:
        sys.exit(f"spotless: {exc.detail}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spotless", description="Spotless marketplace backend")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the whole stack on the embedded default")
    dev.add_argument("--seed", action="store_true", help="load the demo data on start")
    dev.set_defaults(func=cmd_dev)

    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(func=cmd_migrate)

    seed = sub.add_parser("seed", help="load data")
    seed.add_argument("--demo", action="store_true", help="a demo city: clients, cleaners, bookings")
    seed.set_defaults(func=cmd_seed)

    settings = get_settings()
    edge = sub.add_parser("edge", help="serve the REST and WebSocket API")
    edge.add_argument("--host", default=settings.edge_host)
    edge.add_argument("--port", type=int, default=settings.edge_port)
    edge.add_argument("--workers", type=int, default=settings.edge_workers)
    edge.set_defaults(func=cmd_edge)

    admin = sub.add_parser("admin", help="serve the operations dashboard")
    admin.add_argument("--host", default=settings.admin_host)
    admin.add_argument("--port", type=int, default=settings.admin_port)
    admin.set_defaults(func=cmd_admin)

    from jobs.runner import KINDS

    worker = sub.add_parser("worker", help="run job workers")
    worker.add_argument("kinds", nargs="*", help=f"{', '.join(KINDS)} or all (the default)")
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("relay", help="publish outbox events to JetStream").set_defaults(
        func=lambda args: cmd_worker(argparse.Namespace(kinds=["relay"])))

    actors = sub.add_parser("actors", help="inspect the shard actors on the Ray cluster")
    actors_sub = actors.add_subparsers(dest="actors_command", required=True)
    actors_sub.add_parser("status", help="every shard: its node, entity count and memory").set_defaults(
        func=cmd_actors_status)
    rebalance = actors_sub.add_parser(
        "rebalance", help="change shard counts on the live system (docs/decisions/0018)")
    rebalance.add_argument("--spatial", type=int, metavar="N", help="spatial shards")
    rebalance.add_argument("--presence", type=int, metavar="N", help="presence shards")
    rebalance.add_argument("--conversations", type=int, metavar="N", help="conversation shards")
    rebalance.add_argument("--presence-channels", type=int, metavar="N",
                           help="presence-channel shards (who is on each presence channel)")
    rebalance.add_argument("--grace-s", type=float, default=None, metavar="S",
                           help="how long old shards answer \"moved\" before they are killed "
                                "(default SPOTLESS_REBALANCE_GRACE_S)")
    rebalance.set_defaults(func=cmd_actors_rebalance)

    users = sub.add_parser("users", help="manage accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    make_admin = users_sub.add_parser("make-admin", help="give an existing account the admin role")
    make_admin.add_argument("email")
    make_admin.set_defaults(func=cmd_make_admin)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
