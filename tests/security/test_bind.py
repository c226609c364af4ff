"""Every simulated portal and test server listens on 127.0.0.1 only, as the kernel sees it.

The simulator (alone, and as the runtime's built-in portal) and the hostile
portal double used by these tests are started, and their listening sockets
are looked up in the kernel's socket table: each must be bound to 127.0.0.1,
never to a wildcard or an outside address. Asking the simulator for another
address is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.runtime import Runtime
from core.tarana.simulator import Simulator
from tests.hostile.server import HostilePortal

PROC_TCP = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a listening socket on ``port`` (IPv4 and IPv6), from /proc."""
    found: set[str] = set()
    for table in PROC_TCP:
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, _, hex_port = local.partition(":")
            if state != LISTEN or int(hex_port, 16) != port:
                continue
            if len(address) == 8:
                found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
            else:
                found.add(f"ipv6:{address}")
    return found


def assert_loopback_only(base_url: str) -> None:
    url = urlsplit(base_url)
    assert url.hostname == "127.0.0.1", base_url
    if not PROC_TCP[0].exists():
        pytest.skip("no kernel socket table to read on this system")
    assert url.port is not None and listening_addresses(url.port) == {"127.0.0.1"}


def test_the_simulator_listens_on_loopback_only() -> None:
    with Simulator(stations=5, seed=1) as sim:
        assert_loopback_only(sim.base_url)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.10", "example.com", "127.0.0.2"])
def test_the_simulator_refuses_any_other_address(host: str) -> None:
    with pytest.raises(ValueError, match="127.0.0.1"):
        Simulator(stations=5, seed=1, host=host)


def test_the_runtimes_built_in_simulator_listens_on_loopback_only(
    app_runtime: Callable[..., Runtime],
) -> None:
    rt = app_runtime()
    assert rt.settings.uses_simulator and rt.simulator is not None
    assert_loopback_only(rt.simulator.base_url)


def test_the_hostile_test_portal_listens_on_loopback_only() -> None:
    with HostilePortal() as portal:
        assert portal.address[0] == "127.0.0.1"
        assert_loopback_only(portal.base_url)
