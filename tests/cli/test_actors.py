"""`spotless actors status`, run as a process against the session's Ray cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from actors.presence import presence_shard
from actors.spatial import spatial_shard
from actors.status import shard_names

ROOT = Path(__file__).resolve().parents[2]


async def status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cli.main", "actors", "status"], cwd=ROOT, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)


async def test_status_lists_every_shard_with_its_process_and_what_it_holds(db, services, settings):
    # given a spatial and a presence shard that are running (others may not have been used yet)
    spatial, presence = spatial_shard(settings, 0), presence_shard(settings, 0)
    spatial_pid, presence_pid = await spatial.pid.remote(), await presence.pid.remote()
    # when an operator asks for the status
    done = await status({**os.environ, **services})
    # then every shard the settings call for has a line, and the running ones say where they run
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    names = [name for _, name in shard_names(settings)]
    rows = {line.split()[1]: line.split() for line in lines[1:-1]}
    assert sorted(rows) == sorted(names)
    spatial_row = rows[f"{settings.spatial_shard_prefix}-0-of-{settings.spatial_shards}"]
    presence_row = rows[f"{settings.presence_shard_prefix}-0-of-{settings.presence_shards}"]
    assert spatial_row[2] == "alive" and int(spatial_row[3]) >= 0 and int(spatial_row[6]) == spatial_pid
    assert presence_row[2] == "alive" and int(presence_row[6]) == presence_pid
    assert float(spatial_row[4]) > 10  # MiB resident: a Python process with shapely loaded
    assert lines[-1].endswith("MiB resident") and "shards alive" in lines[-1]
    assert all(row[2] in {"alive", "not"} for row in rows.values())  # "not started" splits in two


async def test_status_without_a_cluster_address_says_so_in_one_line(services):
    env = {k: v for k, v in {**os.environ, **services}.items() if k != "RAY_ADDRESS"}
    done = await status(env)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "RAY_ADDRESS" in done.stderr and "Traceback" not in done.stderr
