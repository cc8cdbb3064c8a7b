"""`spotless dev` run as a developer runs it: a real process, embedded services, Ctrl-C.

Starting the stack costs a Ray start (seconds), so one test covers start -> use -> stop ->
restart on the same data; the failure tests fail before Ray starts. `DevRun` runs the command
in its own session, as a terminal does, and `interrupt()` is what Ctrl-C does: SIGINT to that
process group. Processes are found through /proc, so "nothing left behind" is checked against
what really ran.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 60.0
PASSWORD = "correct horse battery staple"

# What points a process at external services, or what a test session may have exported.
_INHERITED = ("DATABASE_URL", "NATS_URL", "RAY_ADDRESS", "PROMETHEUS_MULTIPROC_DIR")


@dataclass(frozen=True)
class DevPorts:
    edge: int
    admin: int
    postgres: int
    nats: int

    @classmethod
    def free(cls) -> DevPorts:
        return cls(free_port(), free_port(), free_port(), free_port())

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.edge}"


def dev_env(data_dir: Path, ports: DevPorts) -> dict[str, str]:
    """The environment of a developer who configured no services: everything is embedded."""
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED and not k.startswith("SPOTLESS_")}
    env.update(
        SPOTLESS_DATA_DIR=str(data_dir),
        SPOTLESS_EDGE_PORT=str(ports.edge),
        SPOTLESS_ADMIN_PORT=str(ports.admin),
        SPOTLESS_EMBEDDED_PG_PORT=str(ports.postgres),
        SPOTLESS_EMBEDDED_NATS_PORT=str(ports.nats),
        # cheap password hashing keeps the seed and the logins quick; the flow is the same
        SPOTLESS_PASSWORD_HASH_TIME_COST="1",
        SPOTLESS_PASSWORD_HASH_MEMORY_KIB="8192",
    )
    return env


def dev_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "dev", *args]


# --- processes, read from /proc ---

@dataclass(frozen=True)
class Proc:
    pid: int
    cmdline: str


def _process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) for every process."""
    table: dict[int, tuple[int, str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it exited while we looked
            continue
        # field 2, the command name, may hold spaces and parentheses: split after its last ")"
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        table[int(entry.name)] = (int(ppid), state, cmdline.strip())
    return table


def descendants(root_pid: int) -> list[Proc]:
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: list[Proc] = []
    todo = list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        found.append(Proc(pid, table[pid][2]))
        todo.extend(children.get(pid, []))
    return found


def still_running(procs: Sequence[Proc], patterns: Sequence[re.Pattern[str]] = ()) -> list[str]:
    """Command lines of `procs` still running, and of any running process matching a pattern.

    A zombie does not run: it has exited and waits only to be reaped by whoever adopted it.
    """
    known = {(p.pid, p.cmdline) for p in procs}
    return sorted({
        cmdline for pid, (_, state, cmdline) in _process_table().items()
        if state != "Z" and ((pid, cmdline) in known or any(p.search(cmdline) for p in patterns))
    })


class DevRun:
    """One `spotless dev` process, with its output collected as it comes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            dev_command(*args), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self.seen: list[Proc] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for_line(self, text: str, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None:
                self._reader.join(5)
                if any(text in line for line in self.lines):
                    return
                raise AssertionError(f"spotless dev exited with {self.proc.returncode} before "
                                     f"printing {text!r}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"spotless dev did not print {text!r} in {timeout_s:.0f} s:\n{self.output}")
            time.sleep(0.2)

    def processes(self) -> list[Proc]:
        """Everything running under it now (remembered, so that close() can clean up)."""
        found = descendants(self.proc.pid)
        self.seen.extend(found)
        return found

    def interrupt(self) -> None:
        """What Ctrl-C in a terminal does: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, *, timeout_s: float) -> int:
        code = self.proc.wait(timeout_s)
        self._reader.join(5)
        return code

    def close(self) -> None:
        """Whatever happened in the test, stop it and all it started, by force if need be."""
        if self.proc.poll() is None:
            self.processes()
            try:
                self.interrupt()
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for proc in self.seen:
            if still_running([proc]):
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def dev_runs() -> Iterator[list[DevRun]]:
    runs: list[DevRun] = []
    yield runs
    for run in runs:
        run.close()


def stop_with_ctrl_c(run: DevRun, data_dir: Path) -> tuple[int, list[str]]:
    """Ctrl-C; the exit code and whatever of the run still runs afterwards."""
    started = run.processes()
    run.interrupt()
    code = run.wait(timeout_s=STOP_TIMEOUT_S)
    patterns = [re.compile(re.escape(str(data_dir))),
                re.compile(rf"session_[0-9_-]+_{run.proc.pid}/")]  # Ray names its session by driver pid
    return code, still_running(started, patterns)


# --- the tests ---

@pytest.mark.timeout(600)
def test_dev_starts_the_stack_stops_on_ctrl_c_and_keeps_the_data(tmp_path: Path,
                                                                 dev_runs: list[DevRun]) -> None:
    # given a developer with no services configured, an empty data folder and free ports
    data_dir = tmp_path / "data"
    ports = DevPorts.free()
    env = dev_env(data_dir, ports)

    # when they run `spotless dev --seed`
    first = DevRun(env, "--seed")
    dev_runs.append(first)
    first.wait_for_line("ready; press Ctrl-C to stop", timeout_s=READY_TIMEOUT_S)

    # then the API is ready, and a new client can register
    with httpx.Client(base_url=ports.edge_url, timeout=30) as api:
        ready = api.get("/readyz")
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert {"database", "nats", "ray"} <= set(checks) and set(checks.values()) == {"ok"}, checks
        registered = api.post("/api/v1/auth/register", json={
            "email": "dana@example.com", "password": PASSWORD, "name": "Dana Whitfield",
            "role": "client", "device_name": "pytest"})
        assert registered.status_code == 201, registered.text
    # and every server of the stack runs under it
    running = " ".join(p.cmdline for p in first.processes())
    for server in ("bin/postgres", "nats-server", "raylet", "gcs_server",
                   "cli.main edge", "cli.main admin", "cli.main worker"):
        assert server in running, f"{server} is not running under spotless dev"

    # when they press Ctrl-C
    code, left = stop_with_ctrl_c(first, data_dir)

    # then it exits cleanly, without a traceback, and leaves no process behind
    assert code == 0, first.output
    assert "Traceback" not in first.output
    assert first.output.rstrip().endswith("spotless: stopped"), first.output
    assert left == []

    # when they run `spotless dev` again on the same data folder and ports
    second = DevRun(env)
    dev_runs.append(second)
    second.wait_for_line("ready; press Ctrl-C to stop", timeout_s=READY_TIMEOUT_S)

    # then the account made in the first run signs in, and so does the seeded demo admin
    with httpx.Client(base_url=ports.edge_url, timeout=30) as api:
        login = api.post("/api/v1/auth/login", json={
            "email": "dana@example.com", "password": PASSWORD, "device_name": "pytest"})
        assert login.status_code == 200, login.text
        assert login.json()["user"]["id"] == registered.json()["user"]["id"]
        admin = api.post("/api/v1/auth/login", json={
            "email": "admin@spotless.demo", "password": "spotless-demo-2026", "device_name": "pytest"})
        assert admin.status_code == 200, admin.text
        assert admin.json()["user"]["role"] == "admin"
    assert "migrations           0 applied" in second.output

    # and Ctrl-C stops this run as cleanly as the first
    code, left = stop_with_ctrl_c(second, data_dir)
    assert code == 0, second.output
    assert left == []


def test_dev_with_a_taken_port_says_which_in_one_line(tmp_path: Path) -> None:
    # given another program listening on the embedded PostgreSQL's port
    ports = DevPorts.free()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", ports.postgres))
        squatter.listen()

        # when the developer runs `spotless dev`
        result = subprocess.run(dev_command(), cwd=ROOT, env=dev_env(tmp_path / "data", ports),
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)

    # then it fails with one line naming the port and the setting that moves it, and starts nothing
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert output.splitlines() == [
        f"spotless: error: port {ports.postgres} for the embedded PostgreSQL is taken (another "
        f"`spotless dev`?); stop that process or set SPOTLESS_EMBEDDED_PG_PORT to a free port"
    ]
    assert not (tmp_path / "data" / "pg").exists()


def test_dev_with_a_server_that_will_not_start_says_why_in_one_line(tmp_path: Path) -> None:
    # given a PostgreSQL data folder that is not one (a version file and nothing else)
    data_dir = tmp_path / "data"
    (data_dir / "pg").mkdir(parents=True)
    (data_dir / "pg" / "PG_VERSION").write_text("16\n")

    # when the developer runs `spotless dev`
    run = subprocess.Popen(dev_command(), cwd=ROOT, env=dev_env(data_dir, DevPorts.free()),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    try:
        stdout, stderr = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()

    # then it fails with one line that says which server and where its log is, and no traceback
    assert run.returncode != 0
    assert "Traceback" not in stdout + stderr
    errors = stderr.strip().splitlines()
    assert len(errors) == 1, stderr
    assert errors[0].startswith("spotless: error: the embedded PostgreSQL exited at start: ")
    assert f"(full log: {data_dir / 'postgres.log'})" in errors[0]
    # and what it had started is stopped
    assert still_running([], [re.compile(re.escape(str(data_dir)))]) == []


def test_a_one_machine_stack_starts_one_conversation_shard_per_four_cores():
    from cli.dev import dev_conversation_shards

    assert [dev_conversation_shards(cores) for cores in (1, 2, 4, 7, 8, 16)] == [1, 1, 1, 1, 2, 4]
