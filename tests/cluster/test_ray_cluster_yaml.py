"""ray_cluster.yaml is a cluster-launcher config `ray up` accepts, and it places shards as the
settings expect: the head offers no shard resource, shard nodes do, enough of it to lose one."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SHARD_RESOURCE = "spotless_shard"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())


def worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: node for name, node in config["available_node_types"].items()
            if name != config["head_node_type"]}


def test_it_validates_against_rays_schema_and_what_ray_up_checks_before_launching(config):
    # given Ray's own schema of cluster-launcher configs
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    # then the file as written validates against it
    jsonschema.validate(config, schema)
    # and so does what `ray up` makes of it (provider defaults merged, node types filled in)
    # before it talks to the provider
    prepared = prepare_config(config)
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_the_head_hosts_no_shard_and_every_worker_type_offers_the_shard_resource(config):
    head = config["available_node_types"][config["head_node_type"]]
    assert SHARD_RESOURCE not in head["resources"]
    shard_nodes = worker_types(config)
    assert shard_nodes, "no worker node type"
    assert all(node["resources"].get(SHARD_RESOURCE, 0) >= 1 for node in shard_nodes.values())


def test_shard_nodes_hold_every_default_shard_with_one_node_lost(config):
    # given the default shard counts of every kind
    defaults = Settings()
    shards = (defaults.spatial_shards + defaults.presence_shards + defaults.conversation_shards
              + defaults.presence_channel_shards)
    # then the shard nodes always running, less one, offer a unit for each
    nodes = [(node["min_workers"], node["resources"][SHARD_RESOURCE]) for node in worker_types(config).values()]
    units_per_node = max(units for _, units in nodes)
    units = sum(count * per_node for count, per_node in nodes)
    assert units - units_per_node >= shards, f"{units} units on the minimum cluster for {shards} shards"
    assert sum(count for count, _ in nodes) <= config["max_workers"]


def test_every_node_installs_the_checkout_and_starts_ray(config):
    # the checkout is copied to the nodes, without the local venv and data
    (mount, source), = config["file_mounts"].items()
    assert source == "." and {".venv", ".spotless"} <= set(config["rsync_exclude"])
    # and installed on every node (common setup commands run on the head and the workers)
    assert any(re.search(rf"pip install .*-e {re.escape(mount)}$", cmd) for cmd in config["setup_commands"])
    # and Ray starts: the head on 6379, the workers joining it
    assert any("ray start --head --port=6379" in " ".join(cmd.split()) for cmd in config["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP:6379" in cmd for cmd in config["worker_start_ray_commands"])
    # with the shards at the priority of every other process, not Ray's nice 15 for its workers
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert any("export RAY_worker_niceness=0; ray start" in " ".join(cmd.split()) for cmd in commands)


def test_the_nodes_run_the_ray_version_spotless_is_installed_with(config):
    # a driver of another Ray version cannot join the cluster
    image = config["docker"]["image"]
    assert image.startswith(f"rayproject/ray:{ray.__version__}-py311"), (image, ray.__version__)
