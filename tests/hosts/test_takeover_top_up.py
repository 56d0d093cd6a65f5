"""A top-up the killed gateway credited: the video it was bought for still starts.

A user whose balance is short of the style's price sends two photos; the bot keeps them and
offers packages (the video starts once they top up). They pay; the active gateway (gw1) credits
the payment and thanks them, and is SIGKILLed before the video starts (a lock on `generations`
holds it there, so every run dies in that window). The payment's update was not journaled as
handled: the standby (gw2) gets it again from Telegram, finds the charge credited, and must
still start the video.

Slow: `pytest -m slow -n 0 tests/hosts/test_takeover_top_up.py`.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from flick.i18n import t
from flick.styles import DEFAULT_FILE
from flick.testing.lab import (
    CAUGHT_UP,
    STANDBY,
    Lab,
    ask_for_a_video,
    buy,
    paid,
    pre_checkout,
    query_id,
    writes_waiting,
)
from flick.testing.telegram.wire import raw
from flick.testing.waits import until

pytestmark = pytest.mark.slow

FREE = 1  # the welcome credits (Settings.free_credits)


#: The built-in styles, "romantic" at two credits: a user with the one free credit is short.
DEARER = """
[[styles.romantic.tiers]]
key = "std"
title = { en = "Standard" }
credits = 2
duration = 5
"""


async def test_a_top_up_credited_by_a_gateway_killed_before_the_kept_photos_video_started_starts_it(
    lab: Lab, tmp_path: Path
) -> None:
    hub = lab.hub
    styles = tmp_path / "styles.toml"
    styles.write_text(DEFAULT_FILE.read_text(encoding="utf-8") + DEARER, encoding="utf-8")
    env = {"STYLES_FILE": str(styles)}
    async with asyncpg.create_pool(lab.database_url, min_size=1, max_size=2) as sql:
        first = await lab.start_gateway("gw1", env)
        await first.said(CAUGHT_UP)
        second = await lab.start_gateway("gw2", env)
        await second.said(STANDBY)
        kim = hub.user(80_001, "Kim")

        def videos() -> int:
            media = [m.media for m in hub.messages_to(kim.id)]
            return sum(isinstance(m, raw.types.MessageMediaDocument) for m in media)

        def texts() -> list[str]:
            return [m.message for m in hub.messages_to(kim.id)]

        sent = await ask_for_a_video(hub, kim)
        kept = t("en", "no_credits_tier", balance=FREE, n=2)
        await until(lambda: kept in texts(), "the photos kept, packages offered")
        offer = next(m for m in hub.messages_to(kim.id) if m.message == kept)

        async def journaled(count: int) -> bool:
            found = await sql.fetchval(
                'SELECT count(*) FROM handled_updates WHERE "user" = $1', kim.id
            )
            return bool(found == count)

        await until(lambda: journaled(sent), "the photos handled and journaled")
        invoice = await buy(hub, sql, kim, offer)
        query = pre_checkout(hub, invoice)
        await hub.push(query)
        await first.said(f"telegram: pre-checkout answered {query_id(query)} ok")

        async with sql.acquire() as holder:
            hold = holder.transaction()
            await hold.start()
            await holder.execute("LOCK TABLE generations IN SHARE MODE")
            await hub.push(paid(hub, invoice))
            thanks = t("en", "payment_thanks", n=invoice.credits, balance=FREE + invoice.credits)
            await until(lambda: thanks in texts(), "gw1 credited the payment and thanked")
            stuck: list[int] = []

            async def video_waits() -> bool:
                stuck[:] = await writes_waiting(sql, "generations")
                return bool(stuck)

            await until(video_waits, "gw1 starting the video, held by the lock")
            await first.kill()
            # A statement waiting for a lock reads no socket: ended here, as the host's loss
            # would end it, before the lock goes.
            await sql.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", stuck)
            await hold.rollback()

        charge = await sql.fetchval(
            "SELECT count(*) FROM payments WHERE telegram_payment_charge_id = $1", invoice.charge
        )
        started = await sql.fetchval('SELECT count(*) FROM generations WHERE "user" = $1', kim.id)
        assert (charge, started) == (1, 0)  # credited; the video never started on gw1

        await second.said(CAUGHT_UP)
        await until(lambda: videos() == 1, "the video paid for delivered by the standby", 60)
        reasons = await sql.fetchval(
            'SELECT array_agg(reason ORDER BY id) FROM ledger WHERE "user" = $1', kim.id
        )
        assert reasons == ["free", "purchase", "generation"]
        balance = await sql.fetchval("SELECT balance FROM users WHERE telegram_id = $1", kim.id)
        assert balance == FREE + invoice.credits - 2
        assert texts().count(thanks) == 1
