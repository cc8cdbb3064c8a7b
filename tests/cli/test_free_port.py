"""Ports for the servers tests and benchmarks start: free, outside the ephemeral range, never twice."""

import pytest

import cli.embedded as embedded


def test_ports_come_from_below_the_ephemeral_range_and_never_twice() -> None:
    # when a process asks for many ports
    ports = [embedded.free_port() for _ in range(50)]
    # then each is free, none repeats, and none is one outgoing connections could take meanwhile
    assert len(set(ports)) == len(ports)
    assert all(embedded.port_is_free(p) for p in ports)
    assert all(p < embedded._ephemeral_low() for p in ports)


def test_without_room_below_the_ephemeral_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a machine whose every port from 1024 up is ephemeral (some containers)
    monkeypatch.setattr(embedded, "_ephemeral_low", lambda: 1024)
    # then ports still come, free and never twice, instead of an error
    ports = [embedded.free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    assert all(embedded.port_is_free(p) for p in ports)
