"""`spotless actors status` and `spotless actors rebalance`, run as processes against the
session's Ray cluster."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

from actors.conversations import ConversationRouter
from actors.layout import Layouts
from actors.presence import presence_shard
from actors.rebalance import kill_shards
from actors.spatial import spatial_shard
from actors.status import shard_names
from tests.actors.rebalance_scenarios import new_conversation

ROOT = Path(__file__).resolve().parents[2]


async def spotless(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)


async def status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await spotless(env, "actors", "status")


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
    # at the priority of the rest of the stack, not Ray's default nice 15 for its workers
    assert int(spatial_row[7]) == 0 and int(presence_row[7]) == 0
    assert float(spatial_row[4]) > 10  # MiB resident: a Python process with shapely loaded
    assert lines[-1].endswith("MiB resident") and "shards alive" in lines[-1]
    assert all(row[2] in {"alive", "not"} for row in rows.values())  # "not started" splits in two


async def test_status_without_a_cluster_address_says_so_in_one_line(services):
    env = {k: v for k, v in {**os.environ, **services}.items() if k != "RAY_ADDRESS"}
    done = await status(env)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "RAY_ADDRESS" in done.stderr and "Traceback" not in done.stderr


def said_moved(done: subprocess.CompletedProcess[str], kind: str, prefix: str, old: int, new: int) -> None:
    """The command succeeded and its line for `kind` says it moved `prefix` from old to new shards."""
    assert done.returncode == 0, done.stderr
    [said] = [line for line in done.stdout.splitlines() if line.startswith(kind)]
    assert said.split()[:6] == [kind, f"{prefix}:", str(old), "->", str(new), "shards"]


async def listed_shards(env: dict[str, str]) -> dict[str, str]:
    """Shard name -> kind, as `spotless actors status` lists them."""
    listed = await status(env)
    assert listed.returncode == 0, listed.stderr
    return {line.split()[1]: line.split()[0] for line in listed.stdout.splitlines()[1:-1]}


async def test_rebalance_moves_conversations_to_new_shards_and_status_lists_them(db, services, settings):
    # given conversation shards of their own prefix on 2, one of which took a message
    prefix = f"cli-conv-{secrets.token_hex(3)}"
    env = {**os.environ, **services, "SPOTLESS_CONVERSATION_SHARD_PREFIX": prefix,
           "SPOTLESS_CONVERSATION_SHARDS": "2", "SPOTLESS_REBALANCE_GRACE_S": "0.2"}
    mine = settings.model_copy(update={"conversation_shard_prefix": prefix, "conversation_shards": 2})
    cid, client_id, _ = await new_conversation(mine)
    router = ConversationRouter(mine, layouts=Layouts(mine))
    await router.send(cid, sender_id=client_id, client_msg_id="before", body="before")
    try:
        # when an operator rebalances them to 3
        done = await spotless(env, "actors", "rebalance", "--conversations", "3")
        # then it says what it did, and status lists the 3 new shards and none of the old ones
        said_moved(done, "conversations", prefix, 2, 3)
        names = set(await listed_shards(env))
        assert {f"{prefix}-{i}-of-3" for i in range(3)} <= names
        assert not {n for n in names if n.startswith(prefix) and n.endswith("-of-2")}
        # and a router made before the change sends on through the new owner, seq after seq
        message, created = await router.send(cid, sender_id=client_id, client_msg_id="after", body="after")
        assert created and message["seq"] == 2
    finally:
        kill_shards(mine, prefix, 2)
        kill_shards(mine, prefix, 3)


async def test_rebalance_moves_presence_channels_to_new_shards_and_status_lists_them(services, settings):
    # given presence-channel shards of their own prefix on 2
    prefix = f"cli-pc-{secrets.token_hex(3)}"
    env = {**os.environ, **services, "SPOTLESS_PRESENCE_CHANNEL_SHARD_PREFIX": prefix,
           "SPOTLESS_PRESENCE_CHANNEL_SHARDS": "2", "SPOTLESS_REBALANCE_GRACE_S": "0.2"}
    try:
        assert {f"{prefix}-{i}-of-2" for i in range(2)} <= set(await listed_shards(env))
        # when an operator rebalances them to 3
        done = await spotless(env, "actors", "rebalance", "--presence-channels", "3")
        # then it says what it did, and status lists the 3 new shards, as presence-channels, and
        # none of the old ones
        said_moved(done, "presence-channels", prefix, 2, 3)
        rows = await listed_shards(env)
        assert {name: kind for name, kind in rows.items() if name.startswith(prefix)} == {
            f"{prefix}-{i}-of-3": "presence-channels" for i in range(3)}
    finally:
        for count in (2, 3):
            kill_shards(settings, prefix, count)


async def test_rebalance_refuses_bad_counts_in_one_line(services):
    env = {**os.environ, **services, "SPOTLESS_CONVERSATION_SHARD_PREFIX": f"cli-bad-{secrets.token_hex(3)}"}
    for args, says in ((["--conversations", "0"], "between 1 and"), ([], "say which counts"),
                       (["--presence-channels", "2000"], "between 1 and"),
                       (["--spatial", "many"], "invalid int value")):
        done = await spotless(env, "actors", "rebalance", *args)
        assert done.returncode != 0
        assert says in done.stderr and "Traceback" not in done.stderr
