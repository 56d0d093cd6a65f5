"""Flick across hosts, on one machine: each host a network namespace of its own (flick.testing.lab),
PostgreSQL and S3 on the "data" host, `flick run` gateways on theirs, one offline Telegram for all
of them (flick.testing.telegram.hub) that keeps what it delivered and answers getDifference.

With workers (the last test): both gateways run with GATEWAY_GENERATES=false, so `flick worker`
processes on three more hosts make every video with the fake providers of the test's process,
and the active gateway only talks to Telegram and sends what they stored.

Slow (namespaces, two `flick run`s, a real PostgreSQL and SeaweedFS): `pytest -m slow
tests/hosts`; .ci/run runs it. It is skipped where the machine allows no network namespaces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from flick.testing.lab import CAUGHT_UP, STANDBY, Lab, ask_for_a_video, replies
from flick.testing.netns import namespaces_unavailable
from flick.testing.telegram.hub import TelegramHub
from flick.testing.telegram.wire import RawUser
from flick.testing.waits import until
from flick.testing.workers import taken_by

pytestmark = pytest.mark.slow


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


# ---- workers -------------------------------------------------------------------------------
HEARTBEAT = "3"
#: Every generation of the test at once: the AI bound (pgqueuer's, across hosts) never queues one.
SEATS = "16"
GATEWAY_ENV = {
    "GATEWAY_GENERATES": "false",
    "WORK_HEARTBEAT_SECONDS": HEARTBEAT,
    "AI_CONCURRENCY": SEATS,
}
WORKER_ENV = {"WORK_HEARTBEAT_SECONDS": HEARTBEAT, "AI_CONCURRENCY": SEATS}
WORKERS = ["w1", "w2", "w3"]


@pytest.fixture
async def workers_lab(tmp_path: Path) -> AsyncIterator[Lab]:
    if reason := namespaces_unavailable():
        pytest.skip(reason)
    async with Lab(tmp_path, gateways=["gw1", "gw2"], workers=WORKERS) as running:
        try:
            yield running
        finally:
            for child in running.hosts.children:
                print("\n".join(child.lines))  # shown when a test fails


def videos_to(hub: TelegramHub, user: RawUser) -> int:
    return sum(1 for m in hub.messages_to(user.id) if m.media is not None)


async def test_workers_on_other_hosts_survive_a_killed_worker_and_a_killed_gateway(
    workers_lab: Lab,
) -> None:
    lab, hub = workers_lab, workers_lab.hub
    async with (
        lab.providers() as (openai, replicate),
        asyncpg.create_pool(lab.database_url, min_size=1, max_size=2) as sql,
    ):

        async def generations(users: list[RawUser]) -> dict[int, dict[str, object]]:
            rows = await sql.fetch(
                'SELECT * FROM generations WHERE "user" = ANY($1) ORDER BY id',
                [u.id for u in users],
            )
            return {int(r["id"]): dict(r) for r in rows}

        async def animating(users: list[RawUser]) -> bool:
            rows = (await generations(users)).values()
            return len(rows) == len(users) and all(r["prediction_id"] for r in rows)

        async def done(users: list[RawUser]) -> bool:
            """Every video with Telegram and its row `done` (written once Telegram answered)."""
            rows = (await generations(users)).values()
            return all(videos_to(hub, u) == 1 for u in users) and all(
                r["status"] == "done" for r in rows
            )

        async def journal_holds(users: list[RawUser], count: int) -> bool:
            found = await sql.fetchval(
                'SELECT count(*) FROM handled_updates WHERE "user" = ANY($1)',
                [u.id for u in users],
            )
            return bool(found == count)

        def release() -> None:
            for prediction in replicate.predictions.values():
                prediction.run_time = 0  # it succeeds now

        first = await lab.start_gateway("gw1", GATEWAY_ENV)
        await first.said(CAUGHT_UP)
        second = await lab.start_gateway("gw2", GATEWAY_ENV)
        await second.said(STANDBY)
        workers = {name: await lab.start_worker(name, WORKER_ENV) for name in WORKERS}
        for worker in workers.values():
            await worker.said("worker ready:")

        # 1. Six users ask for videos; the predictions run on the workers, held `processing`.
        replicate.run_time = 3600
        early = [hub.user(40_000 + i, f"Early{i}") for i in range(6)]
        await asyncio.gather(*(ask_for_a_video(hub, u) for u in early))
        await until(lambda: animating(early), "every early generation is animating", 60)
        held = await generations(early)
        await until(
            lambda: all(taken_by(workers, g) for g in held), "each generation's worker said so"
        )
        # The worker with the most of them is SIGKILLed mid-prediction.
        victim = max(WORKERS, key=lambda w: sum(taken_by(workers, g) == [w] for g in held))
        orphans = [g for g in held if taken_by(workers, g) == [victim]]
        assert orphans
        await workers[victim].kill()
        killed = time.monotonic()
        release()
        await until(
            lambda: all(len(taken_by(workers, g)) == 2 for g in orphans),
            f"{victim}'s generations taken over",
            60,
        )
        takeover = time.monotonic() - killed
        await until(lambda: done(early), "the early videos delivered", 60)
        print(
            f"{len(orphans)} generation(s) of {victim} taken over {takeover:.2f} s after its "
            f"SIGKILL (heartbeat {HEARTBEAT} s); all {len(early)} delivered "
            f"{time.monotonic() - killed:.2f} s after it"
        )

        # 2. Three more ask; their predictions are held while the active gateway is SIGKILLed.
        replicate.run_time = 3600
        late = [hub.user(50_000 + i, f"Late{i}") for i in range(3)]
        sent = await asyncio.gather(*(ask_for_a_video(hub, u) for u in late))
        await until(lambda: animating(late), "every late generation is animating", 60)
        # What the journal lacks, a SIGKILL loses and the standby handles again: wait for it.
        await until(lambda: journal_holds(late, sum(sent)), "the late updates journaled")
        await first.kill()
        killed = time.monotonic()
        during = [hub.user(60_000 + i, f"During{i}") for i in range(3)]
        await hub.push(*(hub.command(u, "help") for u in during))
        for user in during:
            await second.said(f"telegram: sent to {user.id};")
        serving = time.monotonic() - killed
        release()
        await until(lambda: done(late), "the late videos delivered", 60)
        print(
            f"the standby answered {serving:.2f} s after the gateway's SIGKILL; the late videos "
            f"were delivered {time.monotonic() - killed:.2f} s after it"
        )
        assert serving < 10.0

        # Every video once, each paid once from one prediction (a taken-over one adopted).
        users = early + late
        rows = await generations(users)
        assert len(rows) == len(users)
        assert [(r["status"], r["charged"], r["refunded"]) for r in rows.values()] == [
            ("done", 1, False)
        ] * len(users)
        assert all(held[g]["prediction_id"] == rows[g]["prediction_id"] for g in held)
        assert replicate.predictions_created == len(users)
        assert len(replicate.calls("predictions.create")) == len(users)
        assert sorted(replicate.predictions) == sorted(
            str(r["prediction_id"]) for r in rows.values()
        )
        assert [c.status for c in openai.calls("images.edit")] == [200] * len(users)
        ledgers = await sql.fetch(
            "SELECT u.balance, array_agg(l.reason ORDER BY l.id) AS reasons FROM users u "
            'JOIN ledger l ON l."user" = u.telegram_id WHERE u.telegram_id = ANY($1) '
            "GROUP BY u.telegram_id",
            [u.id for u in users],
        )
        assert [(b["balance"], b["reasons"]) for b in ledgers] == [
            (0, ["free", "generation"])
        ] * len(users)
        # Delivered once, as Telegram has it; the late ones by the standby.
        assert [videos_to(hub, u) for u in users] == [1] * len(users)
        assert all(second.find(f"telegram: sent media to {u.id};") is not None for u in late)
        # The updates sent during the outage were each answered once, by the standby; those
        # the killed gateway had handled (journaled) were not handled again.
        gateways = [first, second]
        fresh = sum(second.find(f"telegram: sent to {u.id}; progress") is not None for u in late)
        print(f"the standby started {fresh} progress message(s) afresh for the late users")
        assert [replies(gateways, u) for u in during] == [1] * len(during)
        assert [replies([second], u) for u in users] == [0] * len(users)
        # No gateway made a video: GATEWAY_GENERATES=false left every step to the workers.
        assert all(len(taken_by(workers, g)) >= 1 for g in rows)
