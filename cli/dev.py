"""`spotless dev`: the whole stack on one machine.

Starts what is not configured (embedded PostgreSQL, embedded NATS, a local Ray), migrates, then
runs the edge, the admin and the workers as child processes and prints where each listens.
Ctrl-C (or SIGTERM) stops the children first, then Ray, NATS and PostgreSQL, and exits 0.

The terminal shows only this command's own lines: each child writes to
`<data dir>/logs/<name>.log`. Anything that stops the stack from starting (a taken port, a server
that exits, a failed migration) is printed as one line saying what and where to look, never as a
traceback, and the command exits 1 after stopping whatever it had started. It must never leave
a process behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import httpx

from cli.embedded import EmbeddedError, EmbeddedNats, EmbeddedPostgres, require_free_port
from core.settings import Settings

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class _StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived while the stack was still starting."""


def _say(line: str) -> None:
    print(f"spotless: {line}", flush=True)


def _fail(line: str) -> None:
    print(f"spotless: error: {line}", file=sys.stderr, flush=True)


@dataclass
class Child:
    """A Spotless process (edge, admin, worker) run by `spotless dev`, in its own session."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def last_words(self) -> str:
        """The last meaningful line of the child's log, to say why it stopped."""
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        for line in reversed(lines):
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):  # a structured log line: its message is what matters
                try:
                    entry = json.loads(line)
                except ValueError:
                    return line
                return str(entry.get("msg", line)) if isinstance(entry, dict) else line
            return line
        return f"exit code {self.proc.returncode}"

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> int:
        """Wait for the exit asked for by terminate(), SIGKILL at the deadline; the exit code."""
        try:
            self.proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        try:  # a straggler of its own (e.g. a server worker) must not outlive it
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode


@dataclass
class Stack:
    """Everything `spotless dev` started, so that one place stops it all in reverse order."""

    postgres: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None
    ray_started: bool = False
    children: list[Child] = field(default_factory=list)

    @property
    def started_anything(self) -> bool:
        return bool(self.postgres or self.nats or self.ray_started or self.children)

    def stop(self) -> bool:
        """Stop it all; False when a child did not exit cleanly on SIGTERM."""
        clean = True
        for child in self.children:  # signal all first, so that they drain in parallel
            child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children:
            code = child.wait_stopped(deadline)
            if code not in (0, -signal.SIGTERM):
                _fail(f"the {child.name} exited with code {code} while stopping: "
                      f"{child.last_words()} (log: {child.log})")
                clean = False
        steps = [
            ("Ray", self._stop_ray),
            ("NATS", self.nats.stop if self.nats else None),
            ("PostgreSQL", self.postgres.stop if self.postgres else None),
        ]
        for what, stop in steps:
            if stop is None:
                continue
            try:
                stop()
            except Exception as exc:  # keep stopping the rest whatever went wrong here
                _fail(f"stopping {what} failed: {type(exc).__name__}: {exc}")
                clean = False
        return clean

    def _stop_ray(self) -> None:
        if self.ray_started:
            import ray

            ray.shutdown()


def run_dev(settings: Settings, *, seed: bool = False) -> int:
    """Run the stack until Ctrl-C or SIGTERM; the exit code (0 after a clean stop)."""
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    def handle_signals() -> None:
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    handle_signals()
    stack = Stack()
    code = 0
    try:
        _start(settings, stack, seed=seed, stop_requested=stop_requested, handle_signals=handle_signals)
        _say("ready; press Ctrl-C to stop")
        code = _watch(stack.children, stop_requested)
    except _StopRequested:
        code = 0
    except EmbeddedError as exc:
        _fail(str(exc))
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack.started_anything:
            _say("stopping")
            if not stack.stop():
                code = code or 1
            _say("stopped")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _start(settings: Settings, stack: Stack, *, seed: bool, stop_requested: threading.Event,
           handle_signals: Callable[[], None]) -> None:
    def checkpoint() -> None:
        if stop_requested.is_set():
            raise _StopRequested

    data_dir = settings.data_dir.resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedError(f"cannot create the data folder {data_dir}: {exc.strerror}; "
                            f"set SPOTLESS_DATA_DIR to a writable folder") from None
    _check_ports(settings)

    database_url = settings.database_url
    if not database_url:
        stack.postgres = EmbeddedPostgres(data_dir / "pg", settings.embedded_pg_port)
        stack.postgres.start()
        database_url = stack.postgres.url
        _say(f"embedded PostgreSQL  {database_url}  (data in {stack.postgres.data_dir})")
    checkpoint()
    nats_url = settings.nats_url
    if not nats_url:
        stack.nats = EmbeddedNats(data_dir / "nats", settings.embedded_nats_port)
        stack.nats.start()
        nats_url = stack.nats.url
        _say(f"embedded NATS        {nats_url}  (JetStream data in {stack.nats.data_dir})")
    checkpoint()
    ray_address = settings.ray_address
    if not ray_address:
        stack.ray_started = True  # even a half-started Ray is shut down
        ray_address = _start_ray(settings)
        handle_signals()  # ray.init installs its own SIGTERM handler
        _say(f"local Ray            {ray_address}")
    checkpoint()

    # Built after ray.init: it exports RAY_AUTH_MODE, which the children need to join the cluster.
    env = {**os.environ, "DATABASE_URL": database_url, "NATS_URL": nats_url, "RAY_ADDRESS": ray_address}
    try:
        from storage.migrate import migrate

        applied = asyncio.run(migrate(database_url))
    except Exception as exc:  # any failure here is "the database is not usable"; say which
        raise EmbeddedError(f"migrating the database at {_where(database_url)} failed: "
                            f"{type(exc).__name__}: {exc}") from None
    _say(f"migrations           {len(applied)} applied, schema up to date")
    checkpoint()
    if seed:
        _seed(env)
        checkpoint()

    metrics_dir = data_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    log_dir = data_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    for name, command in {"edge": ["edge"], "admin": ["admin"], "worker": ["worker", "all"]}.items():
        log = log_dir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "cli.main", *command], env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        stack.children.append(Child(name, proc, log))
    children = {child.name: child for child in stack.children}
    edge_url = f"http://{_connect_host(settings.edge_host)}:{settings.edge_port}"
    _wait_until_ready(children["edge"], lambda: _answers_ready(edge_url), stop_requested,
                      f"answer 200 on {edge_url}/readyz")
    _wait_until_ready(children["admin"],
                      lambda: _listens(_connect_host(settings.admin_host), settings.admin_port),
                      stop_requested, f"listen on port {settings.admin_port}")
    _say(f"API                  http://{settings.edge_host}:{settings.edge_port}/api/v1  "
         f"(OpenAPI at /api/v1/docs/openapi.json, health at /readyz)")
    _say(f"admin                http://{settings.admin_host}:{settings.admin_port}/admin")
    _say(f"logs                 {log_dir}")


def _check_ports(settings: Settings) -> None:
    """Every port this run listens on is distinct and free, before anything starts."""
    wanted = [(settings.edge_port, "edge", "SPOTLESS_EDGE_PORT"),
              (settings.admin_port, "admin", "SPOTLESS_ADMIN_PORT")]
    if not settings.database_url:
        wanted.append((settings.embedded_pg_port, "embedded PostgreSQL", "SPOTLESS_EMBEDDED_PG_PORT"))
    if not settings.nats_url:
        wanted.append((settings.embedded_nats_port, "embedded NATS server", "SPOTLESS_EMBEDDED_NATS_PORT"))
    seen: dict[int, str] = {}
    for port, _what, setting in wanted:
        if port in seen:
            raise EmbeddedError(f"{seen[port]} and {setting} are both {port}; give each its own port")
        seen[port] = setting
    for port, what, setting in wanted:
        require_free_port(port, what, setting)


def _start_ray(settings: Settings) -> str:
    import logging

    import ray

    try:
        ray.init(namespace=settings.ray_namespace, include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False)
        return str(ray.get_runtime_context().gcs_address)
    except Exception as exc:  # Ray raises many types; all mean "no local Ray"
        raise EmbeddedError(f"a local Ray did not start: {type(exc).__name__}: {exc} "
                            f"(logs in /tmp/ray/session_latest/logs; or set RAY_ADDRESS)") from None


def _seed(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "cli.main", "seed", "--demo"], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise EmbeddedError(f"`spotless seed --demo` failed: {last}")
    for line in result.stdout.strip().splitlines():
        _say(f"seed                 {line}")


def _wait_until_ready(child: Child, ready: Callable[[], bool], stop_requested: threading.Event,
                      what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if stop_requested.is_set():
            raise _StopRequested
        if child.proc.poll() is not None:
            raise EmbeddedError(f"the {child.name} exited at start with code {child.proc.returncode}: "
                                f"{child.last_words()} (log: {child.log})")
        if time.monotonic() > deadline:
            raise EmbeddedError(f"the {child.name} did not {what} within {START_TIMEOUT_S:.0f} s: "
                                f"{child.last_words()} (log: {child.log})")
        stop_requested.wait(0.2)


def _watch(children: list[Child], stop_requested: threading.Event) -> int:
    """Wait for Ctrl-C; 1 when a child stops by itself first."""
    while not stop_requested.wait(0.3):
        for child in children:
            if child.proc.poll() is not None:
                _fail(f"the {child.name} exited with code {child.proc.returncode}: "
                      f"{child.last_words()} (log: {child.log}); stopping everything")
                return 1
    return 0


def _answers_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def _connect_host(bind_host: str) -> str:
    """Where to reach a server bound to `bind_host` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind_host, bind_host)


def _where(database_url: str) -> str:
    """host:port/name of a database URL, without its credentials."""
    parts = urlsplit(database_url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


__all__ = ["run_dev"]
