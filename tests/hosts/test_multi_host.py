"""Flick across hosts, on one machine: each host a network namespace of its own (flick.testing.lab),
PostgreSQL and S3 on the "data" host, `flick run` gateways on theirs, one offline Telegram for all
of them (flick.testing.telegram.hub) that keeps what it delivered and answers getDifference.

Slow (namespaces, two `flick run`s, a real PostgreSQL and SeaweedFS): `pytest -m slow
tests/hosts`; .ci/run runs it. It is skipped where the machine allows no network namespaces.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from flick.testing.children import Child
from flick.testing.lab import Lab
from flick.testing.netns import namespaces_unavailable
from flick.testing.telegram.wire import RawUser
from flick.testing.waits import until

pytestmark = pytest.mark.slow

RUNNING = "Flick is running"
STANDBY = "standby, waiting for the active gateway"
CAUGHT_UP = "telegram: caught up on "


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    if reason := namespaces_unavailable():
        pytest.skip(reason)
    async with Lab(tmp_path, gateways=["gw1", "gw2"]) as running:
        try:
            yield running
        finally:
            for child in running.hosts.children:
                print("\n".join(child.lines))  # shown when a test fails


def replies(children: list[Child], user: RawUser) -> int:
    """Messages the bot sent `user`, from every gateway."""
    return sum(1 for c in children for ln in c.lines if f"telegram: sent to {user.id};" in ln)


async def journaled(url: str, users: list[RawUser]) -> bool:
    """Whether an update of each of `users` is in the journal of handled updates (written in
    batches: what is not there yet, a SIGKILL loses, and a redelivery is handled again)."""
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            'SELECT count(*) FROM handled_updates WHERE "user" = ANY($1)', [u.id for u in users]
        )
    finally:
        await conn.close()
    return count == len(users)


async def test_the_standby_on_another_host_serves_and_no_update_is_lost_or_handled_twice(
    lab: Lab,
) -> None:
    hub = lab.hub
    first = await lab.start_gateway("gw1")
    await first.said(CAUGHT_UP)
    second = await lab.start_gateway("gw2")
    await second.said(STANDBY)

    before = [hub.user(10_000 + i, f"Before{i}") for i in range(5)]
    await hub.push(*(hub.command(u, "help") for u in before))
    for user in before:
        await first.said(f"telegram: sent to {user.id};")
    await until(lambda: journaled(lab.database_url, before), "the first five journaled")
    await until(lambda: all(hub.messages_to(u.id) for u in before), "the hub has the replies")

    await first.kill()
    killed = time.monotonic()
    # Telegram keeps these while no gateway is connected; the standby asks for them.
    during = [hub.user(20_000 + i, f"During{i}") for i in range(5)]
    await hub.push(*(hub.command(u, "help") for u in during))
    for user in during:
        await second.said(f"telegram: sent to {user.id};")
    serving = time.monotonic() - killed
    print(f"the standby answered {serving:.2f} s after the SIGKILL")

    after = [hub.user(30_000 + i, f"After{i}") for i in range(5)]
    await hub.push(*(hub.command(u, "help") for u in after))
    for user in after:
        await second.said(f"telegram: sent to {user.id};")

    assert serving < 10.0
    # The standby caught up from the pts the first gateway saved when it started: the updates
    # that gateway had handled came again, and the journal kept them from a second effect.
    caught_up = second.lines[await second.said(CAUGHT_UP)]
    assert int(caught_up.rsplit(CAUGHT_UP, 1)[1].split()[0]) >= len(before)
    gateways = [first, second]
    assert [replies(gateways, u) for u in before + during + after] == [1] * 15
    assert [replies([second], u) for u in before] == [0] * 5
    # What the users got, as Telegram has it: one answer each.
    await until(lambda: all(hub.messages_to(u.id) for u in after), "the hub has the last replies")
    assert [len(hub.messages_to(u.id)) for u in before + during + after] == [1] * 15
