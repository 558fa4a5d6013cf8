"""Network namespaces for the rehearsal: each Ray node gets a network stack and an address of its own.

One bridge on the host carries a private /24 that the rehearsal assigns itself (``10.213.7.0/24`` by default,
refused if any route of this machine already covers it): the host side of the bridge is ``.1`` (the services bind
there, so that the nodes reach them), node ``i`` is ``.(10 + i)`` inside namespace ``<prefix>-n<i>``, joined to the
bridge by a veth pair. Nothing is routed beyond the bridge; loopback is brought up in every namespace.

Needs root (``ip netns add``) and iproute2. :func:`unavailable` says why not, and the rehearsal then falls back to
plain processes on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

DEFAULT_SUBNET = "10.213.7"


class NetnsError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def unavailable() -> str | None:
    """Why namespaces cannot be used here (None if they can)."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"bapprobe{os.getpid()}"
    result = _ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"`ip netns add` failed: {result.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


def _subnet_in_use(subnet: str) -> bool:
    network = ipaddress.ip_network(f"{subnet}.0/24")
    for line in _ip("-4", "route", "show", check=False).stdout.splitlines():
        target = line.split()[0] if line.split() else ""
        if target == "default" or not target:
            continue
        try:
            if ipaddress.ip_network(target, strict=False).overlaps(network):
                return True
        except ValueError:
            continue
    return False


@dataclass
class Network:
    """A bridge and ``size`` namespaces. :meth:`up` builds them, :meth:`down` removes them and their processes."""

    prefix: str = "bap"
    size: int = 3
    subnet: str = DEFAULT_SUBNET
    names: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br0"[:15]

    @property
    def host_address(self) -> str:
        return f"{self.subnet}.1"

    def address(self, index: int) -> str:
        return f"{self.subnet}.{10 + index}"

    def namespace(self, index: int) -> str:
        return f"{self.prefix}-n{index}"

    def exec_prefix(self, index: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(index)]

    def up(self) -> None:
        self.down()  # a previous rehearsal killed before it cleaned up
        if _subnet_in_use(self.subnet):
            raise NetnsError(f"{self.subnet}.0/24 is already routed on this machine; pass another subnet")
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for index in range(self.size):
                self._add_node(index)
        except NetnsError:
            self.down()
            raise

    def _add_node(self, index: int) -> None:
        ns, host_end, node_end = self.namespace(index), f"{self.prefix}{index}h"[:15], f"{self.prefix}{index}n"[:15]
        _ip("netns", "add", ns)
        self.names.append(ns)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", node_end)
        _ip("link", "set", host_end, "master", self.bridge)
        _ip("link", "set", host_end, "up")
        _ip("link", "set", node_end, "netns", ns)
        _ip("-n", ns, "addr", "add", f"{self.address(index)}/24", "dev", node_end)
        _ip("-n", ns, "link", "set", node_end, "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def pids(self, index: int) -> list[int]:
        result = _ip("netns", "pids", self.namespace(index), check=False)
        return [int(p) for p in result.stdout.split() if p.strip().isdigit()]

    def kill_all(self, index: int) -> None:
        for pid in self.pids(index):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def down(self) -> None:
        """Kill every process left in the namespaces, delete them (their veths go with them) and the bridge."""
        for index in range(self.size):
            ns = self.namespace(index)
            if _ip("netns", "pids", ns, check=False).returncode == 0:
                self.kill_all(index)
                _ip("netns", "delete", ns, check=False)
        for index in range(self.size):
            _ip("link", "delete", f"{self.prefix}{index}h"[:15], check=False)
        _ip("link", "delete", self.bridge, check=False)
        self.names.clear()
