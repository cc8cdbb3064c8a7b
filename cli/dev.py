"""`spotless dev`: the whole stack on one machine.

Starts what is not configured (embedded PostgreSQL, embedded NATS, a local Ray), migrates, then
runs the edge, the admin and the workers as child processes and prints where each listens.
Ctrl-C (or SIGTERM) stops the children first, then Ray, NATS and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time

from cli.embedded import EmbeddedError, EmbeddedNats, EmbeddedPostgres, require_free_port, stop_process
from core.settings import Settings


def _say(line: str) -> None:
    print(f"spotless: {line}", flush=True)


def run_dev(settings: Settings, *, seed: bool = False) -> int:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    postgres: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None
    children: dict[str, subprocess.Popen[bytes]] = {}
    ray_started = False
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    env = dict(os.environ)
    try:
        require_free_port(settings.edge_port, "edge", "SPOTLESS_EDGE_PORT")
        require_free_port(settings.admin_port, "admin", "SPOTLESS_ADMIN_PORT")
        database_url = settings.database_url
        if not database_url:
            postgres = EmbeddedPostgres(data_dir / "pg", settings.embedded_pg_port)
            postgres.start()
            database_url = postgres.url
            _say(f"embedded PostgreSQL  {database_url}  (data in {postgres.data_dir})")
        nats_url = settings.nats_url
        if not nats_url:
            nats = EmbeddedNats(data_dir / "nats", settings.embedded_nats_port)
            nats.start()
            nats_url = nats.url
            _say(f"embedded NATS        {nats_url}  (JetStream data in {nats.data_dir})")
        ray_address = settings.ray_address
        if not ray_address:
            import logging

            import ray

            ray.init(namespace=settings.ray_namespace, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False)
            ray_started = True
            ray_address = ray.get_runtime_context().gcs_address
            _say(f"local Ray            {ray_address}")
        env.update(DATABASE_URL=database_url, NATS_URL=nats_url, RAY_ADDRESS=ray_address)

        from storage.migrate import migrate

        applied = asyncio.run(migrate(database_url))
        _say(f"migrations           {len(applied)} applied, schema up to date")
        if seed:
            subprocess.run([sys.executable, "-m", "cli.main", "seed", "--demo"], env=env, check=True)

        metrics_dir = data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        commands = {
            "edge": ["edge"],
            "admin": ["admin"],
            "worker": ["worker", "all"],
        }
        for name, command in commands.items():
            children[name] = subprocess.Popen([sys.executable, "-m", "cli.main", *command], env=env,
                                              start_new_session=True)
        _wait_until_listening(settings, children)
        _say(f"API                  http://{settings.edge_host}:{settings.edge_port}/api/v1  "
             f"(OpenAPI at /api/v1/docs/openapi.json, health at /readyz)")
        _say(f"admin                http://{settings.admin_host}:{settings.admin_port}/admin")
        _say("ready; press Ctrl-C to stop")
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    _say(f"{name} exited with code {child.returncode}; stopping everything")
                    stopping = True
                    break
            time.sleep(0.3)
        return 0 if all(c.poll() in (None, 0, -signal.SIGTERM) for c in children.values()) else 1
    except EmbeddedError as exc:
        _say(f"error: {exc}")
        return 1
    except subprocess.CalledProcessError as exc:
        _say(f"error: {' '.join(map(str, exc.cmd[2:]))} failed with code {exc.returncode}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if children:
            _say("stopping")
        for child in children.values():
            stop_process(child, sig=signal.SIGTERM, timeout_s=15)
        if ray_started:
            import ray

            ray.shutdown()
        if nats is not None:
            nats.stop()
        if postgres is not None:
            postgres.stop()
        if children:
            _say("stopped")


def _wait_until_listening(settings: Settings, children: dict[str, subprocess.Popen[bytes]]) -> None:
    import socket

    targets = {"edge": settings.edge_port, "admin": settings.admin_port}
    deadline = time.monotonic() + 60
    for name, port in targets.items():
        while True:
            if children[name].poll() is not None:
                raise EmbeddedError(f"the {name} exited at start with code {children[name].returncode}")
            try:
                with socket.create_connection(("127.0.0.1" if settings.edge_host == "0.0.0.0" else settings.edge_host, port), timeout=0.3):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise EmbeddedError(f"the {name} did not listen on port {port} within 60 s") from None
                time.sleep(0.2)


__all__ = ["run_dev"]
