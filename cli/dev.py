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
import contextlib
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

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


class _StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived while the stack was still starting."""


def dev_conversation_shards(cores: int | None = None) -> int:
    """How many conversation shards a one-machine stack starts with when
    SPOTLESS_CONVERSATION_SHARDS is not set: one per four cores, at least one. On two cores,
    four shards (the cluster default) split each edge worker's batches four ways and cost the
    chat path twice the CPU a message (0.36 ms against 0.19, bench/README session 15), while one
    shard carried 4,000 messages/s there. A database whose shard layout has a row keeps it."""
    return max(1, (cores if cores is not None else os.cpu_count() or 1) // 4)


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
        return "nothing in its log"

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> str | None:
        """Wait for the exit asked for by terminate(), SIGKILL at the deadline; what went wrong."""
        problem = None
        try:
            self.proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            problem = "did not stop on SIGTERM in time and was killed"
        try:  # a straggler of its own (e.g. a server worker) must not outlive it
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if problem is None and self.proc.returncode not in (0, -signal.SIGTERM):
            problem = f"exited with code {self.proc.returncode} while stopping"
        return f"the {self.name} {problem}: {self.last_words()} (log: {self.log})" if problem else None


@dataclass
class Stack:
    """Everything `spotless dev` started, so that one place stops it all in reverse order."""

    postgres: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None
    ray_started: bool = False
    children: list[Child] = field(default_factory=list)
    stop_timeout_s: float = STOP_TIMEOUT_S

    @property
    def started_anything(self) -> bool:
        return bool(self.postgres or self.nats or self.ray_started or self.children)

    def stop(self) -> bool:
        """Stop it all; False when a child did not exit cleanly on SIGTERM."""
        clean = True
        # One that already exited was reported when it did; say nothing more about it here.
        running = [child for child in self.children if child.proc.poll() is None]
        for child in running:  # signal all first, so that they drain in parallel
            child.terminate()
        deadline = time.monotonic() + self.stop_timeout_s
        for child in self.children:
            problem = child.wait_stopped(deadline)
            if problem and child in running:
                _fail(problem)
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
    # workers finish the jobs in hand for up to job_shutdown_grace_s before they exit
    stack = Stack(stop_timeout_s=max(STOP_TIMEOUT_S, settings.job_shutdown_grace_s + 5))
    error = ""
    try:
        _start(settings, stack, seed=seed, stop_requested=stop_requested, handle_signals=handle_signals)
        _say("ready; press Ctrl-C to stop")
        _watch(stack.children, stop_requested)
    except _StopRequested:
        pass
    except EmbeddedError as exc:
        error = str(exc)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        clean = True
        if stack.started_anything:
            if not error:
                _say("stopping")
            clean = stack.stop()
            if not error:
                _say("stopped")
        if error:  # last, so that it is the line the terminal ends on
            _fail(error)
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
    return 1 if error or not clean else 0


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
        # ray.init turned on token auth and exported RAY_AUTH_MODE for the children; a command
        # from another shell (`spotless actors status`) needs both to join.
        _say(f"local Ray            {ray_address}  (from another shell: RAY_ADDRESS={ray_address} "
             f"RAY_AUTH_MODE={os.environ.get('RAY_AUTH_MODE') or 'disabled'})")
    checkpoint()

    # Built after ray.init: it exports RAY_AUTH_MODE, which the children need to join the cluster.
    env = {**os.environ, "DATABASE_URL": database_url, "NATS_URL": nats_url, "RAY_ADDRESS": ray_address}
    if "SPOTLESS_CONVERSATION_SHARDS" not in os.environ:
        env["SPOTLESS_CONVERSATION_SHARDS"] = str(dev_conversation_shards())
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
    _wait_until_ready(children["edge"], lambda: _not_ready(edge_url), stop_requested)
    _wait_until_ready(children["admin"],
                      lambda: _not_listening(_connect_host(settings.admin_host), settings.admin_port),
                      stop_requested)
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
    setting_of: dict[int, str] = {}
    for port, _, setting in wanted:
        if port in setting_of:
            raise EmbeddedError(f"{setting_of[port]} and {setting} are both {port}; give each its own port")
        setting_of[port] = setting
    for port, what, setting in wanted:
        require_free_port(port, what, setting)


def _start_ray(settings: Settings, *, attempts: int = 2) -> str:
    import psutil  # pgserver's dependency
    import ray

    from actors.runtime import local_resources, start_local_ray

    for attempt in range(1, attempts + 1):
        ours_before = {child.pid for child in psutil.Process().children()}
        try:
            start_local_ray(settings.ray_namespace, resources=local_resources(settings))  # SPOTLESS_SHARD_RESOURCE
            return str(ray.get_runtime_context().gcs_address)
        except Exception as exc:  # Ray raises many types; all mean "no local Ray"
            # Ray waits a fixed 30 s for its raylet, which a busy machine can exceed. A failed
            # ray.init leaves its half-started processes running: stop them, then try once more.
            ray.shutdown()
            leftovers = [proc for child in psutil.Process().children() if child.pid not in ours_before
                         for proc in [*child.children(recursive=True), child]]
            for proc in leftovers:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(leftovers, timeout=5)
            if attempt == attempts:
                raise EmbeddedError(f"a local Ray did not start: {type(exc).__name__}: {exc} "
                                    f"(logs in /tmp/ray/session_latest/logs; or set RAY_ADDRESS)") from None
    raise AssertionError("unreachable")


def _seed(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "cli.main", "seed", "--demo"], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise EmbeddedError(f"`spotless seed --demo` failed: {last}")
    for line in result.stdout.strip().splitlines():
        _say(f"seed                 {line}")


def _wait_until_ready(child: Child, not_ready: Callable[[], str | None],
                      stop_requested: threading.Event) -> None:
    """Poll `not_ready` (None once ready, else why not) until the child is ready or gives up."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while (why := not_ready()) is not None:
        if stop_requested.is_set():
            raise _StopRequested
        if child.proc.poll() is not None:
            raise EmbeddedError(f"the {child.name} exited at start with code {child.proc.returncode}: "
                                f"{child.last_words()} (log: {child.log})")
        if time.monotonic() > deadline:
            raise EmbeddedError(f"the {child.name} is not ready after {START_TIMEOUT_S:.0f} s: "
                                f"{why} (log: {child.log})")
        stop_requested.wait(0.2)


def _watch(children: list[Child], stop_requested: threading.Event) -> None:
    """Wait for Ctrl-C or SIGTERM; EmbeddedError when a child stops by itself first."""
    while not stop_requested.wait(0.3):
        for child in children:
            if child.proc.poll() is not None:
                raise EmbeddedError(f"the {child.name} stopped by itself with code "
                                    f"{child.proc.returncode}: {child.last_words()} "
                                    f"(log: {child.log}); stopped everything else")


def _not_ready(url: str) -> str | None:
    """Why the edge at `url` is not ready (its /readyz detail), or None when it is."""
    try:
        response = httpx.get(f"{url}/readyz", timeout=2)
    except httpx.HTTPError as exc:
        return f"{url}/readyz does not answer ({type(exc).__name__})"
    if response.status_code == 200:
        return None
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return f"{url}/readyz answers {response.status_code}" + (f" ({detail})" if detail else "")


def _not_listening(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return None
    except OSError:
        return f"nothing listens on {host}:{port}"


def _connect_host(bind_host: str) -> str:
    """Where to reach a server bound to `bind_host` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind_host, bind_host)


def _where(database_url: str) -> str:
    """host:port/name of a database URL, without its credentials."""
    parts = urlsplit(database_url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


__all__ = ["run_dev"]
