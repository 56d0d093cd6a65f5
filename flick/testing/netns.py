"""Test hosts on one machine: network namespaces joined by veth pairs to a bridge.

    async with Hosts(["data", "gw1", "gw2"]) as hosts:
        child = await hosts.spawn("gw1", "flick.testing.hosted_gateway", env=env)
        hosts.address("data")        # the host's own address on the test network

Each host is a namespace of its own (`lo` up, `eth0` on the bridge, no default route: nothing
it sends can leave the test network). The bridge lives in a namespace of its own too, not in
the machine's: a bridge in the machine's namespace is seen by its firewall (Docker's FORWARD
DROP under br_netfilter would drop the hosts' traffic), and deleting one namespace takes the
bridge and every veth end with it. The test process itself joins through one more veth pair
(`Hosts.own_address`), so fakes it serves and the database it checks are reachable both ways.

Addresses come from 198.18.0.0/15, the range set aside for network tests (RFC 2544): not a
private range a real network of the machine's could be using. Each `Hosts` takes a /24 no other
one on this machine holds (chosen under a file lock), so pytest-xdist workers never clash.
Namespaces are named `flick-<pid>-…`: those of a process that died are removed at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import ipaddress
import itertools
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

from flick.testing.children import Child, merged

SUPERNET = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544: for network tests
PREFIX = "flick-"
LINK_PREFIX = "fk"  # the test process's veth end: fk<pid hex>x<n>, at most 15 characters
LOCK_FILE = Path("/run/lock/flick-netns.lock")
_NAMED = re.compile(rf"^{PREFIX}(\d+)-")
_LINKED = re.compile(rf"^{LINK_PREFIX}([0-9a-f]+)x")
_serial = itertools.count()


def ip(*args: str, check: bool = True) -> str:
    """Run `ip args…`; its stdout. A failure raises with ip's own message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@functools.cache
def namespaces_unavailable() -> str | None:
    """Why this machine cannot run the hosts tests (not root, no `ip`, namespaces refused), or
    None when it can: a namespace and a veth pair are made and removed to find out."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` (iproute2) on this machine"
    probe = f"{PREFIX}{os.getpid()}-probe-{secrets.token_hex(3)}"
    try:
        ip("netns", "add", probe)
        ip("-n", probe, "link", "add", "name", "probe0", "type", "veth", "peer", "name", "probe1")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return f"network namespaces refused here: {exc}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


def namespaces_available() -> bool:
    return namespaces_unavailable() is None


def _alive(pid: int) -> bool:
    return pid == os.getpid() or psutil.pid_exists(pid)


def _kill_inside(netns: str) -> None:
    """SIGKILL every process in `netns` (children's children too: a PostgreSQL that pg_ctl
    daemonized is no child of ours) and wait until they are gone."""
    pids = [int(p) for p in ip("netns", "pids", netns, check=False).split()]
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            proc.kill()
            procs.append(proc)
    psutil.wait_procs(procs, timeout=10)


def sweep_leftovers() -> None:
    """Remove the namespaces and links of test processes that died without cleaning up."""
    for line in ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        found = _NAMED.match(name)
        if found and not _alive(int(found.group(1))):
            _kill_inside(name)
            ip("netns", "del", name, check=False)
    for line in ip("-o", "link", "show", check=False).splitlines():
        link = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        found = _LINKED.match(link)
        if found and not _alive(int(found.group(1), 16)):
            ip("link", "del", link, check=False)


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of SUPERNET that no address of this machine's namespace is in."""
    taken = set()
    for line in ip("-o", "-4", "addr", "show").splitlines():
        address = ipaddress.ip_interface(line.split()[3])
        if address.ip in SUPERNET:
            taken.add(address.network.supernet(new_prefix=24))
    free = [n for n in SUPERNET.subnets(new_prefix=24) if n not in taken]
    if not free:
        raise RuntimeError(f"every /24 of {SUPERNET} is in use on this machine")
    subnet = random.choice(free)
    assert isinstance(subnet, ipaddress.IPv4Network)
    return subnet


class Hosts:
    """Namespaces named by role, each with an address on one bridge; children run inside them.
    Entering builds it all; leaving kills every process in them and removes it all, whatever
    happened in between (also when entering failed half-way)."""

    def __init__(self, roles: Sequence[str]) -> None:
        if len(set(roles)) != len(roles) or not roles:
            raise ValueError(f"roles must be distinct and not none: {roles}")
        self.roles = list(roles)
        serial = next(_serial)
        self.tag = f"{PREFIX}{os.getpid()}-{serial}-{secrets.token_hex(2)}"
        self.bridge_ns = f"{self.tag}-bridge"
        self.link = f"{LINK_PREFIX}{os.getpid():x}x{serial % 256:x}"
        self.subnet: ipaddress.IPv4Network | None = None
        self._children: list[Child] = []
        self._made: list[str] = []  # namespaces made so far, removed on exit

    # ---- where things are ----------------------------------------------------------------
    def netns(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def address(self, role: str) -> str:
        """The address of host `role` on the test network."""
        return self._nth(2 + self.roles.index(role))

    @property
    def own_address(self) -> str:
        """The test process's own address on the test network (its veth end)."""
        return self._nth(1)

    @property
    def children(self) -> list[Child]:
        """Every process `spawn` started, in order."""
        return list(self._children)

    def _nth(self, n: int) -> str:
        if self.subnet is None:
            raise RuntimeError("Hosts is not running")
        return str(self.subnet[n])

    # ---- lifecycle -----------------------------------------------------------------------
    def build(self) -> None:
        """Make the network (blocking: `ip` commands, about 0.1 s)."""
        sweep_leftovers()
        br = self.bridge_ns
        self._add_netns(br)
        ip("-n", br, "link", "add", "br0", "type", "bridge")
        ip("-n", br, "link", "set", "br0", "up")
        with _machine_lock():  # the /24 is chosen and taken in one step
            self.subnet = _free_subnet()
            ip("link", "add", self.link, "type", "veth", "peer", "name", "own", "netns", br)
            ip("addr", "add", f"{self.own_address}/24", "dev", self.link)
        ip("link", "set", self.link, "up")
        ip("-n", br, "link", "set", "own", "master", "br0", "up")
        for i, role in enumerate(self.roles):
            ns = self.netns(role)
            self._add_netns(ns)
            port = f"p{i}"
            ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
               "netns", br)  # fmt: skip
            ip("-n", ns, "addr", "add", f"{self.address(role)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", br, "link", "set", port, "master", "br0", "up")

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        self._made.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    async def stop(self) -> None:
        for child in self._children:
            with contextlib.suppress(ProcessLookupError):
                await child.kill()
        await asyncio.to_thread(self.remove)

    def remove(self) -> None:
        """Kill what still runs inside (blocking: up to 10 s each) and remove the network."""
        for ns in reversed(self._made):
            _kill_inside(ns)
            ip("netns", "del", ns, check=False)
        self._made.clear()
        ip("link", "del", self.link, check=False)  # gone with the bridge already, normally
        self.subnet = None

    async def __aenter__(self) -> Self:
        try:
            await asyncio.to_thread(self.build)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ---- processes inside ------------------------------------------------------------------
    async def spawn(
        self,
        role: str,
        module: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        with_stderr: bool = False,
    ) -> Child:
        """`python -m module args…` on host `role` (`ip netns exec` execs it: the child's pid is
        Python's own, so `Child.kill` SIGKILLs Flick itself). Killed when the hosts stop.
        `with_stderr`: its stderr is read as its stdout is (where `flick worker` logs)."""
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.netns(role), sys.executable, "-m", module, *args,
            stdout=asyncio.subprocess.PIPE, stderr=merged(with_stderr),
            env=dict(env) if env is not None else None,
        )  # fmt: skip
        child = Child(proc)
        self._children.append(child)
        return child

    async def run(
        self, role: str, *command: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A short command on host `role`, to its end (a probe): its exit code and output."""
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.netns(role), *command,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return subprocess.CompletedProcess(command, proc.returncode, out.decode(), err.decode())
