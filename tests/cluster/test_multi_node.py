"""Shard actors on a Ray cluster of several nodes: placement, `spotless actors status`, a lost
node, a rebalance onto a replacement node.

The scenario (tests/cluster/scenario.py) runs as its own process because this one is already
connected to the session's Ray, and a process joins one cluster only. It gets the session's
PostgreSQL and NATS, and a Ray temp dir of its own (tests/cluster/conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIO_TIMEOUT_S = 270  # a bound on a hung cluster, not a benchmark (see the report for times)


def run_scenario(env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.cluster.scenario"], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=SCENARIO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        output += f"\n(killed after {SCENARIO_TIMEOUT_S} s)"
    return proc.returncode, output


def test_shards_spread_over_nodes_survive_losing_one_and_rebalance_onto_a_new_one(services, ray_tmpdir):
    # given the session's PostgreSQL and NATS, and a Ray temp dir of the scenario's own
    env = {k: v for k, v in {**os.environ, **services}.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = ray_tmpdir
    # when the scenario starts a head and two shard nodes, uses the shards, kills a node, adds
    # a replacement and rebalances onto it
    returncode, output = run_scenario(env)
    leftovers = ray_tmpdir.stop_leftovers()
    # what the scenario said, then the end of everything (Ray's own logs included)
    lines = output.splitlines()
    said = [line for line in lines if line.startswith("[ ")]
    tail = "\n".join(said + ["..."] + [line for line in lines[-60:] if line not in said])
    print(tail)  # shown with -rP / -s: each step's time since the scenario started
    # then every step held (the scenario asserts each one and prints what it saw)
    assert returncode == 0, f"scenario failed ({returncode}):\n{tail}"
    for step in ("placed:", "before: search finds", "status names 2 nodes", "killed node", "back:", "requests sent while the node was down: answered",
                 "after the loss: search finds", "every shard alive on the surviving node",
                 "rebalanced:", "after the rebalance: search finds", "status after the rebalance names 2 nodes",
                 "rebalance scenario on the cluster: conversations", "cluster shut down", "scenario passed"):
        assert step in output, f"missing step {step!r}:\n{tail}"
    # and the cluster it started is gone with it
    assert leftovers == [], f"Ray processes left running: {leftovers}"
