"""The local backend (`make run`) listens on the loopback interface only: every listening socket of
its processes (the services, the stand-ins, moto, Redis, PostgreSQL, and the servers in this process)
is bound to 127.0.0.1 or ::1, read from the kernel's socket tables; and a connection to any of its
ports through one of this machine's other addresses is refused."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.backend import SERVICE_PORTS, Backend

LISTEN = "0A"  # TCP_LISTEN in the `st` column of /proc/net/tcp (include/net/tcp_states.h)


@dataclass(frozen=True)
class Listener:
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    inode: int

    @property
    def loopback(self) -> bool:
        address = self.address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped.is_loopback
        return address.is_loopback


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # The kernel prints each 32-bit word of the address in host (little-endian) order.
    raw = b"".join(bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, len(hex_address), 8))
    return ipaddress.ip_address(raw)


def listeners() -> list[Listener]:
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state == LISTEN:
                hex_address, hex_port = local.split(":")
                found.append(Listener(_address(hex_address), int(hex_port, 16), inode))
    return found


def _descendants(pid: int) -> Iterator[int]:
    yield pid
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        for child in children:
            yield from _descendants(int(child))


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def backend_pids(backend: Backend) -> set[int]:
    """This process (it runs the backend's in-process servers) and every process under it, plus
    PostgreSQL's, which pg_ctl starts detached."""
    roots = [os.getpid()]
    assert backend.postgres is not None
    roots.append(int((backend.postgres.data_dir / "postmaster.pid").read_text().split()[0]))
    return {pid for root in roots for pid in _descendants(root)}


def backend_ports(backend: Backend) -> set[int]:
    assert backend.redis and backend.postgres and backend.moto and backend.rds_iam and backend.credentials
    return {backend.port(name) for name in SERVICE_PORTS} | {
        backend.redis.port,
        backend.postgres.port,
        backend.moto.port,
        backend.rds_iam.port,
        backend.credentials.port,
    }


def test_every_listening_socket_of_the_backend_is_on_loopback(backend: Backend) -> None:
    inodes = set().union(*(_socket_inodes(pid) for pid in backend_pids(backend)))
    ports = backend_ports(backend)
    owned = [entry for entry in listeners() if entry.inode in inodes or entry.port in ports]
    # Every server of the backend was found listening (so the check below looked at them all).
    assert ports <= {entry.port for entry in owned}, ports - {entry.port for entry in owned}
    exposed = sorted(f"{entry.address}:{entry.port}" for entry in owned if not entry.loopback)
    assert exposed == [], f"listening beyond loopback: {exposed}"


def _other_addresses() -> list[str]:
    """This machine's own IPv4 addresses other than loopback (the kernel's local routes)."""
    found, previous = set(), ""
    for line in Path("/proc/net/fib_trie").read_text().splitlines():
        if "/32 host LOCAL" in line:
            found.add(previous.split()[-1])
        previous = line
    return sorted(a for a in found if not ipaddress.ip_address(a).is_loopback)


def test_the_backend_refuses_connections_through_other_addresses(backend: Backend) -> None:
    addresses = _other_addresses()
    if not addresses:
        pytest.skip("this machine has no address besides loopback")
    reached = []
    for address in addresses:
        for port in sorted(backend_ports(backend)):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                code = sock.connect_ex((address, port))
            if code != errno.ECONNREFUSED:
                reached.append(f"{address}:{port} ({errno.errorcode.get(code, code)})")
    assert reached == [], f"reachable beyond loopback: {reached}"
