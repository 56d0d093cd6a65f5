"""Random event sequences against the real engine (hypothesis RuleBasedStateMachine).

One engine serves the whole run; each example is a new user. Rules send what a user (or a modified
client, or Telegram replaying an update) can send: commands, style taps (stale ones too), good and
bad photos, cancel, duplicates of earlier updates, crashes, and payments (buy presses, pre-checkout,
successful payments with new or repeated charge ids, refunds). After every step the engine is
settled and the invariants are checked against the actor, user_sessions and the money tables.
Money includes growth: bonus packs, promo codes (a plentiful one, a scarce one shared by every
example, expired, disabled and unknown ones, in odd spellings, by command and deep link),
referrals (the user invited by someone, and inviting a friend who buys), and a subscription (its
link, first payment, renewals, repeated charges, cancellations in /subscription and in Telegram)
with expiring plan credits.

Hypothesis runs in a worker thread; every step hands its coroutine to the test's event loop (where
the engine lives) and waits for it, so the engine runs exactly as in production.

The video provider is gated: a generation stays "processing" until the `video_finishes` rule lets
it go, so events that arrive while a video renders are part of the search too.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from PIL import Image

from flick import events as ev
from flick.actors.messages import Crash
from flick.fsm.conversation import State
from flick.fsm.generation import ACTIVE
from flick.models import promos, referrals
from flick.models.db import pool
from flick.pipeline.runner import PipelineConfig
from flick.testing.engine import EngineHarness, make_jpeg
from flick.testing.engine_tools import EngineTools
from flick.testing.harnesses import HarnessFactory, VideoFactory

COMMANDS = [
    "start",
    "help",
    "balance",
    "create",
    "generate",
    "cancel",
    "history",
    "buy",
    "language",
    "terms",
    "paysupport",
    "subscription",
    "invite",
    "promo",
    "frobnicate",
]
STYLES = ["romantic", "hug", "kiss", "dance", "../../etc", "HUG", ""]
UNSUPPORTED = ["sticker", "voice", "video", "location", "contact", "document", "other"]
# Callback data a modified client might send, any Unicode (superscript digits included).
FORGED = st.one_of(
    st.sampled_from(
        [
            "buy:99",
            "buy:-1",
            "video:abc",
            "video:0",
            "lang:xx",
            "create:1",
            "cancel",
            "style:../../etc",
            "consent",
            "sub:plan:nope",
            "sub:cancel:1",
            "sub:resume:x",
            "sub:plan:",
            ":",
            "",
        ]
    ),
    st.text(max_size=64),
)
TOO_LARGE = (2100, 40)  # over the engine's max_photo_side below
USER_IDS = itertools.count(3_000_000)
PACKAGES = "1:50,5:225,10+2:400,25:875"
PLAN_CREDITS, PLAN_STARS, PERIOD = 3, 300, 30 * 24 * 3600
INVITER_BONUS, INVITEE_BONUS = 2, 1
# Promo codes the engine starts with: (credits, uses, expired, disabled).
CODES = {
    "PLENTY": (2, 1_000_000, False, False),
    "SCARCE": (1, 3, False, False),  # shared by every example: soon used up
    "OLD": (5, 100, True, False),
    "OFF": (5, 100, False, True),
}
SPELLINGS = ["PLENTY", " plenty ", "ＰＬＥＮＴＹ", "РLENTY", "scarce", "OLD", "off", "NOPE", "🎁"]


def _jpeg_half() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((200, 200), 64).convert("RGB").save(out, "JPEG", quality=95)
    data = out.getvalue()
    return data[: len(data) // 2]


PHOTOS = {
    "good": make_jpeg("red", (96, 120)),
    "good2": make_jpeg("blue", (120, 96)),
    "pdf": b"%PDF-1.4\n" + b"0" * 2000,
    "truncated": _jpeg_half(),
    "tiny": make_jpeg("green", (20, 20)),
    "huge": make_jpeg("white", TOO_LARGE),
}


class Engine:
    """What the machine shares across examples: the loop, the running engine, its video gate."""

    loop: asyncio.AbstractEventLoop
    h: EngineHarness
    video: Any
    tools: Any

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)


ENGINE = Engine()


class FlickMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = ENGINE.h
        self.tools = ENGINE.tools
        self.uid = next(USER_IDS)
        self.other = next(USER_IDS)  # someone else, whose orders this user may try to pay
        self.theirs: list[str] = []  # the other user's order payloads
        self.seen: list[ev.Event] = []
        self.pickers: list[int] = []
        self.orders: dict[str, tuple[int, int]] = {}  # payload -> (credits, stars) of our orders
        self.paid_orders: set[str] = set()
        self.charges: dict[str, int] = {}  # charge id -> credits it must have brought
        self.refunds: dict[str, int] = {}  # charge id -> credits the refund must have taken
        self.queries: list[str] = []
        self.presses: list[str] = []
        self.known = False  # the user exists (any event creates them)
        # growth
        self.promo_expected = 0  # credits from PLENTY (SCARCE is read back: it is shared)
        self.plenty_used = False
        self.referred = False  # came through self.other's invite link (before any purchase)
        self.invitee_expected = 0  # this user's invitee bonus
        self.rewarded_charge: str | None = None  # the purchase that counted for the referral
        self.inviter_expected = 0  # bonuses for the friend this user invited
        self.friend = next(USER_IDS)
        self.friend_joined = False
        self.friend_bought = False
        self.sub_payload: str | None = None
        self.sub_charges: list[str] = []
        self.plan_until = 0  # the latest period end credited
        self.expired_expected = 0

    # ---- plumbing -----------------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return ENGINE.run(coro)

    def deliver(self, event: ev.Event, *, remember: bool = True) -> None:
        self.run(self.h.send(event))
        self.known = self.known or event.user.user_id == self.uid
        if remember:
            self.seen.append(event)
        if isinstance(event, ev.ButtonPress):
            self.presses.append(event.callback_id)
        self.settle()

    def settle(self) -> None:
        self.run(self.tools.settle_all(self.h, self.uid, generations=False))
        self.record_pickers()

    def record_pickers(self) -> None:
        for s in self.h.outbox.to(self.uid):
            if s.message_id not in self.pickers and any(
                (d or "").startswith("style:") for _, d in s.buttons()
            ):
                self.pickers.append(s.message_id)  # type: ignore[arg-type]

    def user(self, uid: int | None = None) -> ev.UserInfo:
        return self.h.user(self.uid if uid is None else uid)

    def press(self, data: str, message_id: int | None = None) -> None:
        cid = self.h.next_id("cb")
        self.deliver(ev.ButtonPress(self.user(), cid, cid, data, message_id))

    # ---- rules: the conversation ----------------------------------------------------------------
    @rule(name=st.sampled_from(COMMANDS))
    def command(self, name: str) -> None:
        self.deliver(ev.Command(self.user(), self.h.next_id(), name))

    @rule()
    def consent(self) -> None:
        keyboards = [s for s in self.h.outbox.to(self.uid) if s.keyboard]
        self.press("consent", keyboards[-1].message_id if keyboards else None)

    @rule(style=st.sampled_from(STYLES), age=st.integers(min_value=0, max_value=3))
    def pick_style(self, style: str, age: int) -> None:
        """age 0: the newest picker; more: an older one (stale), when there is one."""
        message_id = self.pickers[-1 - min(age, len(self.pickers) - 1)] if self.pickers else None
        self.press(f"style:{style}", message_id if message_id is not None else 1)

    @rule(
        kind=st.sampled_from([*list(PHOTOS), "good", "good2"]),
        document=st.booleans(),
        album=st.booleans(),
    )
    def photo(self, kind: str, document: bool, album: bool) -> None:
        file_id = self.h.next_id("file")
        data = PHOTOS[kind]
        self.h.outbox.files[file_id] = data
        ref = ev.PhotoRef(file_id, f"u{file_id}", len(data), as_document=document)
        group = f"album-{self.uid}" if album else None
        self.deliver(ev.Photo(self.user(), self.h.next_id(), ref, group))

    @rule(kind=st.sampled_from(UNSUPPORTED))
    def not_a_photo(self, kind: str) -> None:
        self.deliver(ev.Unsupported(self.user(), self.h.next_id(), kind))

    @rule(text=st.text(max_size=40))
    def text(self, text: str) -> None:
        self.deliver(ev.Text(self.user(), self.h.next_id(), text))

    @rule(data=FORGED)
    def forged_button(self, data: str) -> None:
        self.press(data, self.pickers[-1] if self.pickers else None)

    @rule(which=st.sampled_from(["mine", "other", "junk"]))
    def video_button(self, which: str) -> None:
        if which == "mine":
            gen = self.run(
                pool().fetchval('SELECT max(id) FROM generations WHERE "user" = $1', self.uid)
            )
            data = f"video:{gen or 0}"
        elif which == "other":
            gen = self.run(
                pool().fetchval('SELECT max(id) FROM generations WHERE "user" <> $1', self.uid)
            )
            data = f"video:{gen or 1}"
        else:
            data = "video:12x"
        self.press(data)

    @rule(lang=st.sampled_from(["en", "ru", "fr"]))
    def language(self, lang: str) -> None:
        self.press(f"lang:{lang}")

    @precondition(lambda self: bool(self.seen))
    @rule(index=st.integers(min_value=0))
    def duplicate(self, index: int) -> None:
        """Telegram delivers an earlier update again (same event id)."""
        self.deliver(self.seen[index % len(self.seen)], remember=False)

    @precondition(lambda self: self.known)
    @rule()
    def crash(self) -> None:
        self.run(_post(self.h, self.uid, Crash()))
        # Waits in the mailbox through the restart's backoff: settling includes the new actor's
        # load (without it, the actor is gone for a moment and settling finds nothing to do).
        self.run(_post(self.h, self.uid, _Loaded()))
        # The mailbox (which outlives the actor) remembers the update ids, so duplicates of
        # what came before the crash are still recognised: keep drawing from all of them.
        self.settle()

    @rule()
    def video_finishes(self) -> None:
        ENGINE.video.gate.set()
        self.run(self.tools.settle_all(self.h, self.uid))
        ENGINE.video.gate.clear()
        self.record_pickers()

    @rule(steps=st.integers(min_value=1, max_value=6), finish=st.booleans())
    def progress(self, steps: int, finish: bool = True) -> None:
        """What a cooperative user does next: random sequences alone rarely reach a video."""
        for _ in range(steps):
            state = self.current_state()
            balance = self.run(self.h.balance(self.uid)) if self.known else 1
            if state is State.IDLE and balance < 1:
                self.buy(0)
                payload = sorted(p for p in self.orders if p not in self.paid_orders)[-1]
                self.pre_checkout_of(payload, 0, "XTR")
                self.pay_with(payload, f"ch-{self.uid}-p{len(self.charges)}", None)
            elif state is State.IDLE:
                self.command("create")
            elif state is State.CONSENT:
                self.consent()
            elif state is State.CHOOSING_STYLE:
                self.pick_style("kiss", 0)
            elif state is State.WAITING_FOR_PHOTOS:
                self.photo("good", False, False)
            elif finish:
                self.video_finishes()
            else:
                self.command("cancel")

    @rule(steps=st.integers(min_value=1, max_value=6), finish=st.booleans())
    def progress_again(self, steps: int, finish: bool) -> None:
        """The same as progress: a second rule makes progress twice as likely to be drawn."""
        self.progress(steps, finish)

    def current_state(self) -> State:
        if not self.known:
            return State.IDLE
        saved = self.run(
            pool().fetchval('SELECT state FROM user_sessions WHERE "user" = $1', self.uid)
        )
        return State(saved) if saved else State.IDLE

    # ---- rules: money ---------------------------------------------------------------------------
    @rule(index=st.integers(min_value=-1, max_value=5))
    def buy(self, index: int) -> None:
        before = len(self.h.outbox.sent)
        self.press(f"buy:{index}")
        for s in self.h.outbox.sent[before:]:
            if s.method == "send_invoice" and s.chat_id == self.uid:
                self.orders[s.extra["payload"]] = (self._credits_of(index), s.extra["amount"])

    @rule(index=st.integers(min_value=0, max_value=3))
    def someone_else_buys(self, index: int) -> None:
        before = len(self.h.outbox.sent)
        cid = self.h.next_id("cb")
        self.deliver(ev.ButtonPress(self.user(self.other), cid, cid, f"buy:{index}"))
        self.theirs += [
            s.extra["payload"] for s in self.h.outbox.sent[before:] if s.method == "send_invoice"
        ]

    def _credits_of(self, index: int) -> int:
        return self.h.app.supervisor.ctx.packages[index].total

    def _payload(self, choice: int, kind: str) -> str:
        mine = sorted(self.orders)
        if kind == "mine" and mine:
            return mine[choice % len(mine)]
        if kind == "theirs" and self.theirs:
            return self.theirs[choice % len(self.theirs)]
        if kind == "unknown":
            return f"order:{uuid.UUID(int=choice)}"
        return ["", "junk", "order:nope"][choice % 3]

    @rule(
        choice=st.integers(min_value=0, max_value=9),
        kind=st.sampled_from(["mine", "mine", "theirs", "unknown", "junk"]),
        off=st.sampled_from([0, 0, 0, 1, -1]),
        currency=st.sampled_from(["XTR", "XTR", "USD"]),
    )
    def pre_checkout(self, choice: int, kind: str, off: int, currency: str) -> None:
        self.pre_checkout_of(self._payload(choice, kind), off, currency)

    def pre_checkout_of(self, payload: str, off: int, currency: str) -> None:
        stars = self.orders.get(payload, (1, 50))[1] + off
        query = self.h.next_id("q")
        self.deliver(ev.PreCheckout(self.user(), self.h.next_id(), query, currency, stars, payload))
        self.queries.append(query)
        answer = [
            s
            for s in self.h.outbox.sent
            if s.method == "answer_pre_checkout" and s.extra["query_id"] == query
        ]
        assert len(answer) == 1, f"pre-checkout {query} answered {len(answer)} times"
        acceptable = (
            payload in self.orders
            and payload not in self.paid_orders
            and off == 0
            and currency == "XTR"
        )
        assert answer[0].extra["ok"] is acceptable, (payload, off, currency, answer[0].text)
        if not acceptable:
            assert answer[0].text  # a refusal always says why

    @rule(
        choice=st.integers(min_value=0, max_value=9),
        kind=st.sampled_from(["mine", "mine", "theirs", "unknown", "junk"]),
        charge=st.sampled_from(["new", "new", "repeat"]),
        stars=st.sampled_from([None, 50, 225, 1, 1000]),
    )
    def payment(self, choice: int, kind: str, charge: str, stars: int | None) -> None:
        payload = self._payload(choice, kind)
        if charge == "repeat" and self.charges:
            charge_id = sorted(self.charges)[choice % len(self.charges)]
        else:
            charge_id = f"ch-{self.uid}-{len(self.charges)}-{choice}"
        self.pay_with(payload, charge_id, stars)

    def pay_with(self, payload: str, charge_id: str, stars: int | None) -> None:
        amount = stars if stars is not None else self.orders.get(payload, (1, 50))[1]
        self.deliver(
            ev.PaymentSucceeded(
                self.user(), self.h.next_id(), charge_id, f"p-{charge_id}", "XTR", amount, payload
            )
        )
        if charge_id not in self.charges:
            if payload in self.orders:
                self.charges[charge_id] = self.orders[payload][0]
                self.paid_orders.add(payload)
            else:
                self.charges[charge_id] = _credits_for_stars(self.h, amount)
            self.purchased(charge_id)

    def purchased(self, charge_id: str) -> None:
        """A new charge of this user: the first one after an invite link counts for it."""
        if self.referred and self.rewarded_charge is None:
            self.rewarded_charge = charge_id
            self.invitee_expected += INVITEE_BONUS

    @rule(choice=st.integers(min_value=0, max_value=9), known=st.booleans())
    def refund(self, choice: int, known: bool) -> None:
        if known and self.charges:
            charge_id = sorted(self.charges)[choice % len(self.charges)]
        else:
            charge_id = f"never-{choice}"
        balance = self.run(self.h.balance(self.uid)) if self.known else 0
        self.deliver(
            ev.PaymentRefunded(self.user(), self.h.next_id(), charge_id, None, "XTR", 50, None)
        )
        if charge_id in self.charges and charge_id not in self.refunds:
            bought = self.charges[charge_id]
            if charge_id == self.rewarded_charge:
                bought += INVITEE_BONUS  # the referral bonus came with it, and goes with it
            self.refunds[charge_id] = min(bought, balance)

    # ---- rules: promo codes, referrals, the subscription ---------------------------------------
    @rule(spelling=st.sampled_from(SPELLINGS), deep_link=st.booleans())
    def promo(self, spelling: str, deep_link: bool) -> None:
        if deep_link:
            command = ev.Command(self.user(), self.h.next_id(), "start", f"promo_{spelling}")
        else:
            command = ev.Command(self.user(), self.h.next_id(), "promo", spelling)
        self.deliver(command)
        plenty = spelling.strip().upper() in ("PLENTY", "ＰＬＥＮＴＹ", "РLENTY")
        if plenty and not self.plenty_used:
            self.plenty_used = True
            self.promo_expected += CODES["PLENTY"][0]

    @rule(which=st.sampled_from(["inviter", "inviter", "self", "nobody"]))
    def arrive_by_invite(self, which: str) -> None:
        """/start ref_… with someone's link (self.other's), one's own, or nobody's."""
        if which == "nobody":
            code = "nobody"
        else:
            uid = self.other if which == "inviter" else self.uid
            self.run(self.h.send(ev.Command(self.user(uid), self.h.next_id(), "start")))
            self.settle()
            code = self.run(referrals.invite_code(uid))
        self.deliver(ev.Command(self.user(), self.h.next_id(), "start", f"ref_{code}"))
        if which == "inviter" and not self.referred and not self.charges:
            self.referred = True

    @rule()
    def friend_buys(self) -> None:
        """Someone this user invited joins (once) and buys: the first purchase pays the bonus."""
        if not self.friend_joined:
            self.deliver(ev.Command(self.user(), self.h.next_id(), "invite"))
            code = self.run(referrals.invite_code(self.uid))
            friend = self.user(self.friend)
            self.deliver(ev.Command(friend, self.h.next_id(), "start", f"ref_{code}"))
            self.friend_joined = True
        charge = f"fr-{self.friend}-{self.h.next_id()}"
        payment = ev.PaymentSucceeded(
            self.user(self.friend), self.h.next_id(), charge, "", "XTR", 50, "junk"
        )
        self.deliver(payment, remember=False)
        if not self.friend_bought:
            self.friend_bought = True
            self.inviter_expected += INVITER_BONUS

    @rule()
    def subscribe(self) -> None:
        """/subscription and the plan's button: a link (unless a subscription is active)."""
        self.deliver(ev.Command(self.user(), self.h.next_id(), "subscription"))
        before = len(self.h.outbox.sent)
        self.press("sub:plan:monthly")
        links = [s for s in self.h.outbox.sent[before:] if s.method == "create_invoice_link"]
        if links:
            assert not self.sub_charges or self.plan_until < time.time(), "a second subscription"
            self.sub_payload = links[-1].extra["payload"]
            assert links[-1].extra["subscription_period"] == PERIOD

    @precondition(lambda self: self.sub_payload is not None)
    @rule(kind=st.sampled_from(["first", "renewal", "renewal", "repeat"]))
    def subscription_payment(self, kind: str) -> None:
        assert self.sub_payload is not None
        if kind == "repeat" and self.sub_charges:
            charge = self.sub_charges[-1]
            until = self.plan_until
        else:
            charge = f"sub-{self.uid}-{len(self.sub_charges)}"
            if kind == "first" or not self.sub_charges:
                until = int(time.time()) + PERIOD
            else:
                until = self.plan_until + PERIOD
        first = kind == "first" or not self.sub_charges
        plan_before = self.run(
            pool().fetchval("SELECT plan_credits FROM users WHERE telegram_id = $1", self.uid)
        )
        payment = ev.PaymentSucceeded(
            self.user(), self.h.next_id(), charge, "", "XTR", PLAN_STARS, self.sub_payload,
            recurring=True, first_recurring=first, subscription_until=until,
        )  # fmt: skip
        self.deliver(payment)
        if charge in self.charges:
            return  # a charge seen before: no effect
        self.sub_charges.append(charge)
        self.charges[charge] = PLAN_CREDITS
        if until > self.plan_until:  # a new period: the last one's unused credits expire
            self.expired_expected += plan_before or 0
            self.plan_until = until
        self.purchased(charge)

    @precondition(lambda self: bool(self.sub_charges))
    @rule(who=st.sampled_from(["bot", "bot", "user", "user_restores", "payment_failed"]))
    def subscription_change(self, who: str) -> None:
        sub_id = self.run(
            pool().fetchval('SELECT max(id) FROM subscriptions WHERE "user" = $1', self.uid)
        )
        if who == "bot":
            self.deliver(ev.Command(self.user(), self.h.next_id(), "subscription"))
            renews = self.run(
                pool().fetchval("SELECT renews FROM subscriptions WHERE id = $1", sub_id)
            )
            self.press(f"sub:{'cancel' if renews else 'resume'}:{sub_id}")
            return
        state = {"user": "canceled", "user_restores": "restored"}.get(who, who)
        assert self.sub_payload is not None
        self.deliver(ev.SubscriptionChanged(self.user(), self.h.next_id(), self.sub_payload, state))

    # ---- invariants -----------------------------------------------------------------------------
    @invariant()
    def state_is_a_state_and_memory_matches_the_database(self) -> None:
        if not self.known:
            return
        saved = self.run(
            pool().fetchrow('SELECT state, data FROM user_sessions WHERE "user" = $1', self.uid)
        )
        db_state = State(saved["state"]) if saved else State.IDLE
        actor = self.h.app.supervisor.actors.get(self.uid)
        if actor is not None and actor.loaded:
            assert isinstance(actor.conv.state, State)
            assert actor.conv.state is db_state, (actor.conv.state, db_state)

    @invariant()
    def money_adds_up(self) -> None:
        if not self.known:
            return
        m = self.run(_money(self.uid))
        actor = self.h.app.supervisor.actors.get(self.uid)
        assert m["balance"] >= 0
        assert m["balance"] == m["ledger_sum"], m
        if actor is not None and actor.loaded:
            assert actor.conv.balance == m["balance"], (actor.conv.balance, m)
        assert 0 <= m["plan_credits"] <= m["balance"]
        # The ledger explains every credit, and agrees with the payments and generations tables.
        assert m["free"] == [1]
        assert m["purchase_rows"] == m["package_payments"]
        assert m["purchased"] + m["bonus"] == m["package_credits"]
        assert m["bonus"] == m["payment_bonus"]
        assert m["subscription_rows"] == m["subscription_payments"]
        assert m["subscribed"] == m["subscription_credits"]
        assert m["generation_rows"] == m["generations"] and m["spent"] == m["generations"]
        assert m["refund_rows"] == m["refunded_generations"] == m["refunded"]
        assert m["payment_refund_rows"] == m["refunded_payments"]
        assert m["promo"] == m["redeemed"] and m["promo_rows"] == m["redemptions"]
        # ...and with what this user actually paid, redeemed and got refunded (the model).
        assert m["charges"] == self.charges, (m["charges"], self.charges)
        assert m["refunded_charges"] == set(self.refunds)
        taken = sum(self.refunds.values())
        assert m["taken_now"] == taken
        # What a refund could not take at once (a running generation held it) is taken if that
        # generation's credit comes back, never more than the refunds fell short.
        short = sum(
            self.charges[c] + (INVITEE_BONUS if c == self.rewarded_charge else 0) - n
            for c, n in self.refunds.items()
        )
        assert m["taken_later"] >= 0 and m["taken_later"] + m["credits_owed"] <= short
        scarce = CODES["SCARCE"][0] if m["has_scarce"] else 0
        assert m["promo"] == self.promo_expected + scarce
        assert m["referral"] == self.invitee_expected + self.inviter_expected
        assert m["expired"] == self.expired_expected
        bought = sum(self.charges.values())
        assert m["balance"] == (
            1 + bought + m["promo"] + m["referral"] - m["spent"] + m["refunded"]
            - taken - m["taken_later"] - m["expired"]
        )  # fmt: skip

    @invariant()
    def promo_codes_never_go_beyond_their_uses(self) -> None:
        rows = self.run(
            pool().fetch(
                "SELECT c.code, c.used, c.max_uses, count(r.id) AS n FROM promo_codes c "
                "LEFT JOIN promo_redemptions r ON r.code = c.id GROUP BY c.id"
            )
        )
        for row in rows:
            assert row["used"] == row["n"] <= row["max_uses"], dict(row)
        unusable = self.run(
            pool().fetchval(
                "SELECT count(*) FROM promo_redemptions r JOIN promo_codes c ON c.id = r.code "
                "WHERE c.code = ANY($1::text[])",
                ["OLD", "OFF"],
            )
        )
        assert unusable == 0

    @invariant()
    def the_inviter_gets_one_bonus_per_invitee(self) -> None:
        if not self.referred:
            return
        bonus = self.run(
            pool().fetchval(
                'SELECT COALESCE(SUM(delta), 0) FROM ledger WHERE "user" = $1 '
                "AND reason = 'referral' AND note LIKE $2",
                self.other,
                f"%invited {self.uid},%",
            )
        )
        assert bonus == (INVITER_BONUS if self.rewarded_charge else 0)

    @invariant()
    def one_unfinished_generation_at_most_and_it_is_the_sessions(self) -> None:
        if not self.known:
            return
        rows = self.run(
            pool().fetch(
                'SELECT id FROM generations WHERE "user" = $1 AND status = ANY($2::text[]) '
                "AND NOT refunded",
                self.uid,
                [s.value for s in ACTIVE],
            )
        )
        assert len(rows) <= 1, rows
        if rows:
            saved = self.run(
                pool().fetchrow('SELECT state, data FROM user_sessions WHERE "user" = $1', self.uid)
            )
            assert saved["state"] == State.PROCESSING.value
            assert json.loads(saved["data"])["generation_id"] == rows[0]["id"]

    @invariant()
    def limiter_never_exceeds_its_size(self) -> None:
        limiter = self.h.app.limiter
        assert limiter.peak <= limiter.size
        assert ENGINE.video.meter.peak <= limiter.size

    @invariant()
    def every_query_and_press_is_answered_once(self) -> None:
        answered: dict[str, int] = {}
        for s in self.h.outbox.sent:
            key = s.extra.get("query_id") or s.extra.get("callback_id")
            if key is not None:
                answered[key] = answered.get(key, 0) + 1
        for key in self.queries + self.presses:
            assert answered.get(key) == 1, (key, answered.get(key))

    def teardown(self) -> None:
        ENGINE.video.gate.set()
        try:
            self.run(self.h.settle())
        finally:
            ENGINE.video.gate.clear()


def _credits_for_stars(h: EngineHarness, stars: int) -> int:
    best = max((p.total for p in h.app.supervisor.ctx.packages if p.stars <= stars), default=0)
    return best or 1


class _Loaded:
    """A message no handler takes: consumed once the user's (restarted) actor has loaded."""


async def _post(h: EngineHarness, uid: int, message: object) -> None:
    h.app.supervisor.post(uid, message)


async def _money(uid: int) -> dict[str, Any]:
    p = pool()
    ledger = await p.fetch('SELECT reason, delta FROM ledger WHERE "user" = $1', uid)
    payments = await p.fetch(
        "SELECT telegram_payment_charge_id AS id, credits, bonus, kind, status FROM payments "
        'WHERE "user" = $1',
        uid,
    )
    ledger_full = await p.fetch(
        "SELECT reason, delta, payment IS NOT NULL AS by_payment FROM ledger "
        "WHERE \"user\" = $1 AND reason = 'payment_refunded'",
        uid,
    )
    redemptions = await p.fetch(
        "SELECT c.code, r.credits FROM promo_redemptions r JOIN promo_codes c ON c.id = r.code "
        'WHERE r."user" = $1',
        uid,
    )
    user = await p.fetchrow(
        "SELECT balance, plan_credits, credits_owed FROM users WHERE telegram_id = $1", uid
    )
    gens = await p.fetch('SELECT charged, refunded FROM generations WHERE "user" = $1', uid)

    def of(reason: str) -> list[int]:
        return [r["delta"] for r in ledger if r["reason"] == reason]

    packages = [r for r in payments if r["kind"] == "package"]
    subs = [r for r in payments if r["kind"] == "subscription"]
    return {
        "balance": user["balance"],
        "plan_credits": user["plan_credits"],
        "credits_owed": user["credits_owed"],
        "ledger_sum": sum(r["delta"] for r in ledger),
        "free": of("free"),
        "purchase_rows": len(of("purchase")),
        "purchased": sum(of("purchase")),
        "bonus": sum(of("bonus")),
        "package_payments": len(packages),
        "package_credits": sum(r["credits"] for r in packages),
        "payment_bonus": sum(r["bonus"] for r in payments),
        "subscription_rows": len(of("subscription")),
        "subscribed": sum(of("subscription")),
        "subscription_payments": len(subs),
        "subscription_credits": sum(r["credits"] for r in subs),
        "expired": -sum(of("plan_expired")),
        "promo": sum(of("promo")),
        "promo_rows": len(of("promo")),
        "redeemed": sum(r["credits"] for r in redemptions),
        "redemptions": len(redemptions),
        "has_scarce": any(r["code"] == "SCARCE" for r in redemptions),
        "referral": sum(of("referral")),
        "charges": {r["id"]: r["credits"] for r in payments},
        "refunded_charges": {r["id"] for r in payments if r["status"] == "refunded"},
        "refunded_payments": sum(1 for r in payments if r["status"] == "refunded"),
        "payment_refund_rows": sum(1 for r in ledger_full if r["by_payment"]),
        "taken_now": -sum(r["delta"] for r in ledger_full if r["by_payment"]),
        "taken_later": -sum(r["delta"] for r in ledger_full if not r["by_payment"]),
        "generation_rows": len(of("generation")),
        "generations": len(gens),
        "spent": -sum(of("generation")),
        "refund_rows": len(of("refund")),
        "refunded_generations": sum(1 for g in gens if g["refunded"]),
        "refunded": sum(of("refund")),
    }


async def assert_invariants_over_random_conversations(
    harness: HarnessFactory, tools: EngineTools, video_factory: VideoFactory, examples: int
) -> None:
    video = video_factory(tools.InFlight())
    video.gate.clear()
    ENGINE.loop = asyncio.get_running_loop()
    ENGINE.h = await harness(
        video=video,
        # A gated video waits as long as an example runs: a budget running out mid-example
        # would end it at a random moment (and the money with it) while invariants are read.
        pipeline=PipelineConfig(
            poll_interval=0.02, compose_budget=900, animate_budget=900, deliver_budget=900
        ),
        max_photo_side=2000,
        ai_concurrency=2,
        packages=PACKAGES,
        plans=f"monthly:{PLAN_CREDITS}:{PLAN_STARS}",
        plan_unused_credits="expire",
        referral_inviter_credits=INVITER_BONUS,
        referral_invitee_credits=INVITEE_BONUS,
        bot_username="flick_test_bot",
    )
    for code, (credits, uses, expired, disabled) in CODES.items():
        expires = datetime.now(UTC) + timedelta(days=-1 if expired else 30)
        await promos.create(code, credits, uses, expires, admin_id=0)
        if disabled:
            await promos.disable(code)
    ENGINE.video = video
    ENGINE.tools = tools
    config = settings(
        max_examples=examples,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        print_blob=True,
    )
    await asyncio.to_thread(run_state_machine_as_test, FlickMachine, settings=config)
    assert ENGINE.h.app.supervisor.generations_running == 0


async def test_random_conversations_keep_the_invariants(
    harness: HarnessFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    examples = int(os.environ.get("FLICK_STATE_MACHINE_EXAMPLES", "15"))
    await assert_invariants_over_random_conversations(harness, tools, video_factory, examples)


@pytest.mark.slow
async def test_a_thousand_random_conversations_keep_the_invariants(
    harness: HarnessFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    """`pytest -m slow`: the same machine, 1,000 examples (about half an hour here)."""
    await assert_invariants_over_random_conversations(harness, tools, video_factory, 1000)
