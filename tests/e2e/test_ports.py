"""Ports chosen for local servers stay out of the kernel's ephemeral range, so nothing steals them."""

from __future__ import annotations

import socket

import pytest

from devstack import servers
from devstack.backend import SERVICE_PORTS, free_port_base
from devstack.servers import LOCALHOST, ephemeral_port_range, free_port, pick_port, port_is_free


def test_free_ports_are_bindable_and_below_the_ephemeral_range() -> None:
    low, _ = ephemeral_port_range()
    for _ in range(50):
        port = free_port()
        assert 10_000 <= port < low
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers bind: with SO_REUSEADDR, so a port whose last connection is still in
            # TIME_WAIT (an earlier test's) counts as free. Without it such a port fails here at random.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOCALHOST, port))


def test_a_service_port_run_lies_wholly_below_the_ephemeral_range() -> None:
    low, _ = ephemeral_port_range()
    for _ in range(50):
        base = free_port_base()
        assert base >= 10_000
        assert base + max(SERVICE_PORTS.values()) < low
        assert all(port_is_free(base + offset) for offset in SERVICE_PORTS.values())


def test_a_port_taken_meanwhile_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((LOCALHOST, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        draws = iter([taken, taken, 12_345])
        monkeypatch.setattr(servers, "pick_port", lambda span=1: next(draws))
        assert servers.free_port() == 12_345


def test_a_wide_ephemeral_range_moves_the_choice_above_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "ephemeral_port_range", lambda: (1_024, 50_000))
    for _ in range(200):
        port = pick_port(span=8)
        assert port > 50_000
        assert port + 7 <= 65_535


def test_outgoing_connections_use_ephemeral_source_ports() -> None:
    """The premise: a client's source port comes from the ephemeral range, never from ours."""
    low, high = ephemeral_port_range()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind((LOCALHOST, free_port()))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            assert low <= client.getsockname()[1] <= high
