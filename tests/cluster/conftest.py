"""A Ray temp dir of a test's own, for the Ray clusters its subprocesses start.

A `ray.cluster_utils.Cluster` records its address under the Ray temp dir (/tmp/ray by default),
where any `ray.init()` on the machine would find and join it; Ray's processes also name the
dir on their command lines, so what is left of them afterwards can be found and stopped.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import psutil
import pytest


def ray_processes_of(ray_tmpdir: str) -> list[psutil.Process]:
    """Processes of a Ray whose session lives under `ray_tmpdir` that are still running."""
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(ray_tmpdir in part for part in proc.info["cmdline"] or []):
                left.append(proc)
        except psutil.Error:
            pass
    return left


class RayTmpdir(str):
    """The dir (short: Ray's socket paths live in it)."""

    def stop_leftovers(self) -> list[int]:
        """Kill what is still running of a Ray under this dir; return their pids."""
        procs = ray_processes_of(self)
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        return [proc.pid for proc in procs]


@pytest.fixture
def ray_tmpdir() -> Iterator[RayTmpdir]:
    path = RayTmpdir(tempfile.mkdtemp(prefix="spl-ray-", dir="/tmp"))
    try:
        yield path
    finally:
        path.stop_leftovers()
        shutil.rmtree(path, ignore_errors=True)
