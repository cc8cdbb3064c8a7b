"""`spotless <command>`: dev, migrate, seed, edge, admin, worker, relay, users."""

from __future__ import annotations

import argparse
import asyncio
import sys

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
    from jobs.runner import run_workers

    _need_database()
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
    from actors.status import render, shard_status

    connect(settings)
    try:
        rows = asyncio.run(shard_status(settings))
    finally:
        disconnect()
    print(render(rows))
    if any(row.state.startswith("no answer") for row in rows):
        sys.exit(1)


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
