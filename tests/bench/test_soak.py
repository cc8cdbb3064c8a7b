"""bench/soak.py runs: a few seconds of the mixed load against the session's edge.

The soak is a benchmark, not a test of speed; this checks that the command still drives every
operation end to end (search, booking, chat over REST and sockets, presence) and that the
stack answers all of it without a 5xx, a lost or a doubled chat message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.soak import OPS
from tests.stack import ROOT, EdgeProcess


def test_a_short_soak_runs_every_operation_without_a_server_error(edge: EdgeProcess, tmp_path: Path):
    # given the session's running edge, and its database in DATABASE_URL (the services fixture)
    figures = tmp_path / "soak.json"

    # when the soak drives it for three seconds with one virtual user per operation, each doing at
    # least two rounds (search both with and without a window)
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--url", edge.url, "--seconds", "3", "--min-rounds", "2", "--warmup", "0",
         "--clients", "4", "--cleaners", "3", "--conversations", "3", "--search-users", "1",
         "--booking-users", "1", "--chat-users", "1", "--presence-users", "1", "--pool", "2",
         "--json", str(figures)],
        env=dict(os.environ), cwd=ROOT, capture_output=True, text=True, timeout=180)

    print(done.stdout)  # pytest shows it when the test fails

    # then it printed its table, and every operation was answered, none of them with a 5xx
    assert done.returncode == 0, done.stderr[-3000:]
    assert "operation" in done.stdout and "load average" in done.stdout
    [run] = json.loads(figures.read_text())
    assert run["fault"] == "none"
    for op in OPS:
        stats = run["ops"][op]
        assert stats["ok"] > 0, (op, stats)
        assert stats["server_errors"] == 0, (op, stats)
    # and every acknowledged chat message reached the other party once, stored without a gap
    assert run["chat"]["acked"] > 0
    assert (run["chat"]["lost"], run["chat"]["duplicates"], run["chat"]["broken_conversations"]) == (0, 0, 0)
