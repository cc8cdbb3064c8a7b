"""What every shard actor asks Ray for, from the settings (tests/cluster/scenario.py shows Ray
honouring it on several nodes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from actors.runtime import LOCAL_SHARD_RESOURCE_UNITS, local_resources, shard_options
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

# A process with no RAY_ADDRESS: `connect` starts a local Ray, as `spotless edge` alone does.
LOCAL_RAY = """
import ray
from actors.presence import presence_shard
from actors.runtime import connect, disconnect
from core.settings import Settings

settings = Settings()
connect(settings)
print("offered", ray.cluster_resources().get(settings.shard_resource))
print("shard pid", ray.get(presence_shard(settings, 0).pid.remote(), timeout=60))
disconnect()
"""


def test_by_default_shards_spread_over_any_node_without_reserving_anything():
    options = shard_options(Settings(), "spatial-0-of-4")
    assert options["scheduling_strategy"] == "SPREAD"
    assert options["num_cpus"] == 0
    assert "resources" not in options and "memory" not in options
    # and a local Ray needs nothing extra to host them
    assert local_resources(Settings()) == {}


def test_a_configured_shard_resource_and_memory_are_asked_for_by_every_shard(monkeypatch):
    # given an operator's settings for a cluster with shard nodes
    monkeypatch.setenv("SPOTLESS_SHARD_RESOURCE", "spotless_shard")
    monkeypatch.setenv("SPOTLESS_SHARD_MEMORY_MB", "512")
    monkeypatch.setenv("SPOTLESS_SHARD_SCHEDULING", "DEFAULT")
    settings = Settings()
    # when a shard of any kind is created
    options = shard_options(settings, "conversations-1-of-4", max_concurrency=256)
    # then it needs one unit of the resource, reserves the memory, and is placed as told
    assert options["resources"] == {"spotless_shard": 1}
    assert options["memory"] == 512 * 2**20
    assert options["scheduling_strategy"] == "DEFAULT"
    assert (options["name"], options["max_concurrency"], options["lifetime"]) == (
        "conversations-1-of-4", 256, "detached")
    # and a local Ray started for these settings offers the resource, far more than it needs
    assert local_resources(settings) == {"spotless_shard": LOCAL_SHARD_RESOURCE_UNITS}


@pytest.mark.parametrize(("variable", "value"), [("SPOTLESS_SHARD_SCHEDULING", "PACK"),
                                                 ("SPOTLESS_SHARD_MEMORY_MB", "-1")])
def test_a_placement_ray_does_not_know_is_refused_when_the_settings_are_read(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(pydantic.ValidationError, match=variable.removeprefix("SPOTLESS_").lower()):
        Settings()


def test_a_local_ray_started_with_a_shard_resource_configured_offers_it_and_hosts_shards(ray_tmpdir):
    # given production's shard settings on a machine without a cluster
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(SPOTLESS_SHARD_RESOURCE="spotless_shard", SPOTLESS_SHARD_MEMORY_MB="32",
               SPOTLESS_RAY_NAMESPACE="spotless-local-placement", RAY_TMPDIR=ray_tmpdir)
    # when a process connects (starting a local Ray) and asks for a shard
    done = subprocess.run([sys.executable, "-c", LOCAL_RAY], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180)
    # then that Ray offers the resource and the shard is placed and answers
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert f"offered {float(LOCAL_SHARD_RESOURCE_UNITS)}" in lines, done.stdout
    assert any(line.startswith("shard pid ") and int(line.split()[-1]) > 0 for line in lines), done.stdout
    assert ray_tmpdir.stop_leftovers() == []
