"""The multi-host kit (flick.testing.netns, flick.testing.data_host): hosts that reach each other
and the test process, PostgreSQL and S3 reachable from another host, nothing left behind."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import psutil
import pytest

from flick.testing.lab import Lab
from flick.testing.netns import Hosts, ip, namespaces_unavailable

PYTHON = sys.executable


@pytest.fixture(autouse=True)
def needs_namespaces() -> None:
    if reason := namespaces_unavailable():
        pytest.skip(reason)


def namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.split()}


def links() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link").splitlines()}


async def test_hosts_reach_each_other_and_the_test_process_and_nothing_else() -> None:
    async with Hosts(["a", "b"]) as hosts:
        listener = await hosts.spawn(
            "a", "http.server", "8000", "--bind", hosts.address("a"),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        await listener.said("Serving HTTP")
        url = f"http://{hosts.address('a')}:8000/"
        fetch = f"import urllib.request; print(urllib.request.urlopen({url!r}).status)"
        from_b = await hosts.run("b", PYTHON, "-c", fetch)
        assert from_b.stdout.split() == ["200"], from_b.stderr
        async with aiohttp.ClientSession() as http, http.get(url) as answer:
            assert answer.status == 200  # from the test process, through its own veth
        # Only the test network is routed: nothing a host sends can leave it.
        routes = (await hosts.run("b", "ip", "-4", "route")).stdout.splitlines()
        assert [r.split()[0] for r in routes] == [f"{hosts.subnet}"]


async def test_leaving_kills_every_process_and_removes_every_namespace_even_after_a_failure() -> (
    None
):
    hosts = Hosts(["a", "b"])
    with pytest.raises(RuntimeError, match="the test failed"):
        async with hosts:
            made = {hosts.netns("a"), hosts.netns("b"), hosts.bridge_ns}
            assert made <= namespaces() and hosts.link in links()
            server = await hosts.spawn("b", "http.server", "--bind", "127.0.0.1")
            grandchild = await hosts.run("a", "sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!")
            raise RuntimeError("the test failed")
    assert made.isdisjoint(namespaces()) and hosts.link not in links()
    assert server.proc.returncode is not None
    assert not psutil.pid_exists(int(grandchild.stdout))  # no child of ours, killed all the same


async def test_the_namespaces_of_a_test_process_that_died_are_removed_at_the_next_start() -> None:
    gone = await asyncio.create_subprocess_exec(PYTHON, "-c", "pass")
    await gone.wait()
    dead = gone.pid  # a pid no process has now (reused within a second: unheard of)
    leftover = f"flick-{dead}-0-dead-a"
    ip("netns", "add", leftover)
    try:
        async with Hosts(["a"]):
            assert leftover not in namespaces()
    finally:
        ip("netns", "del", leftover, check=False)


@pytest.mark.slow
async def test_postgresql_and_s3_on_the_data_host_serve_another_host(tmp_path: Path) -> None:
    async with Lab(tmp_path, gateways=[], workers=["probe"]) as lab:
        probe = await lab.hosts.run(
            "probe", PYTHON, "-m", "flick.testing.data_host", "probe", env=lab.env("probe")
        )
        assert probe.stdout.split("\n")[:2] == ["database ok", "storage ok"], probe.stderr
        assert lab.database_url.startswith(f"postgresql://postgres@{lab.hosts.address('data')}:")
