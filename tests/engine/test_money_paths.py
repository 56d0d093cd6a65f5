"""Whose money, which order: every money path checks what it touches, and nothing is overwritten.

Each test names the bug it pins: a reconciled payment made with someone else's invoice marked
their order paid; a Stars refund while a generation held the bought credit left the user with
both; an admin grant to a stale username; an admin correction reported as applied when it was
not; an absolute balance posted to an actor overwriting a spend made meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from flick import events as ev
from flick.errors import FinalError
from flick.i18n import t
from flick.models.db import pool
from flick.payments.reconcile import StarTransaction
from flick.pipeline.runner import PipelineConfig
from flick.ports import ComposedImage
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools
from flick.testing.harnesses import HarnessFactory

ALICE, BOB, ADMIN = 1501, 1502, 1590


class GatedImage:
    """An image model that holds every call until released, then fails it (or succeeds)."""

    name = "gated"

    def __init__(self, fail: bool = True) -> None:
        self.fail = fail
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def compose(self, photos: Sequence[bytes], prompt: str, style: str) -> ComposedImage:
        self.entered.set()
        await self.release.wait()
        if self.fail:
            raise FinalError("blocked by moderation", kind="moderation", user_reason="moderation")
        raise AssertionError("this test never lets a compose succeed")

    async def check(self) -> None:
        return None


def payment(
    h: EngineHarness, uid: int, charge: str, stars: int, payload: str = ""
) -> ev.PaymentSucceeded:
    return ev.PaymentSucceeded(h.user(uid), f"pay:{charge}", charge, "", "XTR", stars, payload)


async def reasons(uid: int) -> list[tuple[str, int]]:
    rows = await pool().fetch('SELECT reason, delta FROM ledger WHERE "user" = $1 ORDER BY id', uid)
    return [(r["reason"], r["delta"]) for r in rows]


async def test_stars_refund_while_a_generation_holds_the_credit_is_taken_when_it_fails(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    image = GatedImage()
    h = await harness(
        image=image,
        free_credits=0,
        pipeline=PipelineConfig(poll_interval=0.02, compose_budget=30, animate_budget=30),
    )
    await h.send(payment(h, ALICE, "stx-held", 50))  # 50 Stars buy one credit
    await h.settle()
    await tools.to_photos(h, ALICE)
    await h.photo(ALICE)
    await h.photo(ALICE)
    await image.entered.wait()  # the generation holds the only credit
    await h.send(ev.PaymentRefunded(h.user(ALICE), "refund:stx-held", "stx-held", None, "XTR", 50))
    await h.settle(generations=False)
    assert await h.balance(ALICE) == 0
    image.release.set()  # … and now the generation fails: its credit must not come back to keep
    await h.settle()
    assert await h.balance(ALICE) == 0 == await h.ledger_sum(ALICE)
    assert await reasons(ALICE) == [
        ("purchase", 1),
        ("generation", -1),
        ("payment_refunded", 0),  # nothing to take then: the generation held it
        ("refund", 1),
        ("payment_refunded", -1),  # taken as it came back
    ]
    assert (
        await pool().fetchval("SELECT credits_owed FROM users WHERE telegram_id = $1", ALICE) == 0
    )


async def test_a_reconciled_charge_made_with_someone_elses_invoice_leaves_their_order_alone(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(ALICE, "buy")
    await h.settle()
    await h.press(ALICE, "buy:1")
    await h.settle()
    payload = tools.calls(h, "send_invoice", ALICE)[-1].extra["payload"]
    # Bob paid with Alice's forwarded invoice; the update never reached us, reconcile finds it.
    charge = StarTransaction("stx-fwd", BOB, 225, payload, False, 0)
    report = await h.app.reconcile([charge])
    await h.settle()
    assert [c.charge_id for c in report.missing] == ["stx-fwd"]
    assert await pool().fetchval("SELECT status FROM orders") == "pending"  # still Alice's to pay
    row = await pool().fetchrow('SELECT "user", "order", credits, source FROM payments')
    assert (row["user"], row["order"], row["credits"], row["source"]) == (BOB, None, 5, "reconcile")
    assert await h.balance(BOB) == 1 + 5 == await h.ledger_sum(BOB)


async def test_an_admin_grant_during_a_charge_is_never_overwritten(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness(admin_ids=[ADMIN])
    await tools.to_photos(h, ALICE)
    await h.photo(ALICE)
    await h.photo(ALICE)  # the generation takes the one credit …
    await h.command(ADMIN, "grant", f"{ALICE} 3 sorry for the wait")  # … while this arrives
    await h.settle()
    assert await h.balance(ALICE) == 1 - 1 + 3 == await h.ledger_sum(ALICE)
    live = h.app.supervisor.actors.get(ALICE)
    assert live is None or live.conv.balance == 3  # the actor's copy agrees with the database
    # Reported as applied, with the balance right after it (before or after the spend).
    assert tools.texts(h, ADMIN)[-1] in {
        t("en", "admin_granted", n=3, id=ALICE, balance=b) for b in (3, 4)
    }


async def test_an_admin_correction_reports_what_it_applied_not_what_was_asked(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness(admin_ids=[ADMIN])
    await h.command(ALICE, "start")  # one free credit
    # Alice's actor and the admin's run side by side: the grant must find her already known
    # (on a busy machine the admin's actor used to get there first).
    await h.settle()
    await h.command(ADMIN, "grant", f"{ALICE} -5 duplicate account")
    await h.settle()
    assert await h.balance(ALICE) == 0 == await h.ledger_sum(ALICE)
    assert tools.texts(h, ADMIN)[-1] == t("en", "admin_granted", n=-1, id=ALICE, balance=0)


async def test_an_admin_grant_to_a_username_given_up_reaches_its_new_holder(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness(admin_ids=[ADMIN])
    await h.send(ev.Command(ev.UserInfo(ALICE, ALICE, "sam", "Alice"), h.next_id(), "start"))
    await h.settle()
    # Alice gave the name up; Bob took it.
    await h.send(ev.Command(ev.UserInfo(ALICE, ALICE, "alice_now", "Alice"), h.next_id(), "help"))
    await h.send(ev.Command(ev.UserInfo(BOB, BOB, "Sam", "Bob"), h.next_id(), "start"))
    await h.settle()
    await h.command(ADMIN, "grant", "@sam 2 welcome")
    await h.settle()
    assert (await h.balance(ALICE), await h.balance(BOB)) == (1, 3)


async def test_an_admin_command_naming_two_users_is_refused(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness(admin_ids=[ADMIN])
    for uid in (ALICE, BOB):
        await h.command(uid, "start")
    await h.settle()
    # Rows from before usernames were kept unique (or written by hand): both say "twin".
    await pool().execute(
        "UPDATE users SET username = 'twin' WHERE telegram_id = ANY($1)", [ALICE, BOB]
    )
    await h.command(ADMIN, "grant", "@twin 2 gift")
    await h.settle()
    assert tools.texts(h, ADMIN)[-1] == t(
        "en", "admin_ambiguous", ref="@twin", ids=f"{ALICE}, {BOB}"
    )
    assert (await h.balance(ALICE), await h.balance(BOB)) == (1, 1)


async def test_a_name_no_column_can_hold_is_stored_safely(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    odd = ev.UserInfo(ALICE, ALICE, "u" * 300, "Ann\x00" + "é" * 5000 + "\ud800", "x" * 40)
    await h.send(ev.Command(odd, h.next_id(), "start"))
    await h.settle()
    assert h.app.supervisor.crashes == 0
    assert tools.texts(h, ALICE) and t("en", "crash_sorry") not in tools.texts(h, ALICE)
    row = await pool().fetchrow("SELECT username, first_name FROM users")
    assert len(row["username"]) == 64 and len(row["first_name"]) == 128
    assert "\x00" not in row["first_name"]
