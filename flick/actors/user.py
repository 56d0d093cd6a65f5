"""One user's actor: a mailbox loop that fires state-machine triggers and runs their effects.

Everything about one user happens here, one message at a time, so a user's flow needs no locks.
Slow work (downloading a photo, a generation) runs as a separate task that reports back into the
mailbox; the loop itself only waits on the database and on sending replies. What the actor does
with each message lives in `flick.actors.handlers`, by feature, behind the narrow `Scope`.

A handler that fails on a transient error (the database or S3 unreachable, a Telegram timeout)
does not lose its message: the actor reloads its state from the database (the truth) and runs
the handler again, with backoff, until it succeeds or its budget ends. Money and the actor's own
tasks' reports have no budget: they are never given up while Flick runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import TYPE_CHECKING

from loguru import logger

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.admission import Admission, Priority
from flick.actors.context import Context
from flick.actors.handlers.routes import EVENTS
from flick.actors.journal import UpdateJournal
from flick.actors.mailbox import Mailbox
from flick.actors.row_write import RowWrite, answers_from_memory
from flick.errors import TelegramRefused, is_transient
from flick.fsm.conversation import Conversation, State
from flick.fsm.generation import Status
from flick.i18n import pick_language, t
from flick.models import generations, money, sessions
from flick.ports import Keyboard, RecipientGone, RecipientUnreachable
from flick.retries import retry_transient

if TYPE_CHECKING:
    from loguru import Logger

#: Never given up while Flick runs: money, and what the actor's own tasks report.
_NEVER_DROPPED = (
    ev.PaymentSucceeded,
    ev.PaymentRefunded,
    msg.PhotoStored,
    msg.GenerationEnded,
    msg.ResumeGeneration,
    msg.Grant,
    msg.RefundPurchase,
    msg.ReconciledCharge,
    msg.ReferralBonus,
    ev.SubscriptionChanged,
)
#: Outside events that jump the admission queue: Telegram drops a pre-checkout after 10 s.
_MONEY = (ev.PreCheckout, ev.PaymentSucceeded, ev.PaymentRefunded, ev.SubscriptionChanged)


class UserActor:
    def __init__(
        self,
        user: ev.UserInfo,
        ctx: Context,
        mailbox: Mailbox,
        journal: UpdateJournal,
        admission: Admission | None = None,
    ) -> None:
        self.user = user
        self.admission = admission
        self.ctx = ctx
        self.mailbox = mailbox
        self.journal = journal
        self.conv = Conversation(styles=ctx.styles)
        self.lang = "en"
        self.blocked = False
        self.busy = False
        self.handled_ok = 0  # messages handled since this actor started (the supervisor reads)
        self.loaded = False
        # The write is given the user, not this actor: a bound method of the actor would make
        # the two a cycle, and a stopped actor garbage only the collector finds (#19).
        self.row_write = RowWrite(
            partial(_open_account, user, ctx.settings.free_credits), admission
        )

    # ---- lifecycle -------------------------------------------------------------------------
    async def first_load(self) -> None:
        """Load this user for the message that woke the actor: one read, the row's write beside
        the reply (flick/actors/row_write.py). A user not stored yet is a new account."""
        u = self.user
        account = await money.find_account(u.user_id)
        new = account is None
        if account is None:
            account = money.new_account(u.language_code, self.ctx.settings.free_credits)
        await self._apply(account)
        self.row_write.start(new=new)

    async def load(self) -> None:
        """(Re)load this user from the database: the balance, the saved conversation."""
        await self.row_write.settle(self.log)  # one write of the row at a time
        account = await _open_account(self.user, self.ctx.settings.free_credits)
        self.row_write.written()
        await self._apply(account)

    async def _apply(self, account: money.Account) -> None:
        u = self.user
        self.conv = Conversation(styles=self.ctx.styles)
        self.conv.balance = account.balance
        self.conv.consented = account.consent
        self.blocked = account.blocked
        self.lang = pick_language(account.language, u.language_code or account.language_code)
        self.mailbox.remember(account.handled)
        if account.plan_lapsed:  # a plan period ended unrenewed while they were away
            lapsed = await money.expire_lapsed_plan(u.user_id)
            if lapsed is not None:
                self.conv.balance = lapsed.balance
        if account.session is not None:
            self.conv.restore(*account.session)
            await self._settle_stale_processing()

    async def _settle_stale_processing(self) -> None:
        """A stop between a generation's end and the actor hearing of it leaves the session
        PROCESSING with a generation that has ended: the user would be "busy" for good."""
        gen_id = self.conv.generation_id
        if self.conv.state is not State.PROCESSING:
            return
        record = await generations.get(gen_id) if gen_id is not None else None
        if record is None or not record.active:
            # Delivered: it becomes the latest video, so its buttons ("Try again") work.
            delivered = record is not None and record.status is Status.DONE
            if not (
                delivered and self.conv.trigger("finish", generation_id=gen_id, delivered=True)
            ):
                self.conv.trigger("cancel")
            await self.save()

    async def run(self) -> None:
        """Handle messages until idle; an exception escapes to the supervisor (crash → restart)."""
        try:
            await self._run()
        finally:  # idle, crashed or stopped: the row's write is not left behind
            self.busy = True  # (so the supervisor's drain, and a test's settle, wait for it)
            try:
                await self.row_write.settle(self.log)
            finally:
                self.busy = False

    async def _run(self) -> None:
        async with self._admitted(None):
            await self._retrying(self.first_load, budget=None, what="loading the user")
            self.loaded = True
            # The update that woke this actor is handled in the same slot: one wait, not two.
            if len(self.mailbox):
                message = await self.mailbox.get(0)  # there: returns at once
                self.busy = True
                try:
                    await self.handle(message)
                finally:
                    self.busy = False
        while True:
            message = await self.mailbox.get(self.ctx.settings.actor_idle_seconds)
            if message is None:
                if len(self.mailbox) or self._intakes_running():
                    continue
                return
            self.busy = True  # from here: the supervisor's drain waits for it (admission too)
            try:
                async with self._admitted(message):
                    await self.handle(message)
            finally:
                self.busy = False

    def _admitted(self, message: object | None) -> AbstractAsyncContextManager[None]:
        """A slot to work in (flick/actors/admission.py): money and reports first, then users
        mid-conversation, then users new to this process."""
        if self.admission is None:
            return contextlib.nullcontext()
        urgent = message is not None and (
            not isinstance(message, ev.Event) or isinstance(message, _MONEY)
        )
        if urgent or self.mailbox.urgent:
            priority = Priority.MONEY
        else:
            priority = Priority.ONGOING if self.loaded else Priority.NEW
        return self.admission.slot(self.uid, priority)

    def _intakes_running(self) -> int:
        return self.ctx.services.intakes_running(self.uid) if self.ctx.services else 0

    @property
    def uid(self) -> int:
        return self.user.user_id

    @property
    def log(self) -> Logger:
        # Bound when a line is written, not kept: rare next to the actors that wait, and one
        # object fewer for the collector in each of them (#19).
        return logger.bind(user_id=self.user.user_id)

    @property
    def pending_photos(self) -> int:
        return self.conv.pending_photos

    # ---- dispatch --------------------------------------------------------------------------
    async def handle(self, message: object) -> None:
        event_id = message.event_id if isinstance(message, ev.Event) else None
        if event_id is not None and not self.mailbox.first_time(event_id):
            self.log.debug("ignoring redelivered update {}", event_id)
            return
        handler = EVENTS.get(type(message))
        if handler is None:
            self.log.warning("no handler for {}", type(message).__name__)
            return
        budget = None if isinstance(message, _NEVER_DROPPED) else self.ctx.settings.retry_seconds
        first = True

        async def attempt() -> None:
            nonlocal first
            if not first:
                await self.load()  # start again from the truth: memory may be half-changed
            first = False
            if self.blocked or not answers_from_memory(message):
                stored = await self.row_write.landed()  # a new user's row, before it is needed
                if stored is not None:
                    await self._apply(stored)
            if self.blocked and isinstance(message, ev.Event) and _from_user(message):
                await self._unblocked()
            await handler(self, message)

        try:
            await self._retrying(attempt, budget=budget, what=type(message).__name__)
        except Exception as exc:
            if event_id is None or not is_transient(exc):
                if event_id is not None:
                    self.handled(event_id)  # a bug: its redelivery must not crash us again
                raise  # the supervisor restarts the actor (and apologises, once)
            # Given up after its budget: tell the user, and let a redelivery try again.
            self.log.error("{} not handled: {}", type(message).__name__, exc)
            self.unhandled(event_id)
            await self.say("try_again_later")
            return
        self.handled_ok += 1
        if event_id is not None and not isinstance(message, ev.Photo):
            self.handled(event_id)  # a photo counts as handled once it is stored and counted

    async def _retrying(
        self, call: Callable[[], Awaitable[None]], *, budget: float | None, what: str
    ) -> None:
        def log(exc: BaseException, attempt: int) -> None:
            self.log.warning("{} failed ({}); retry {}", what, exc, attempt)

        await retry_transient(call, budget=budget, on_retry=log)

    def handled(self, event_id: str) -> None:
        self.journal.record(self.uid, event_id)

    def unhandled(self, event_id: str) -> None:
        self.mailbox.forget(event_id)

    def post(self, user_id: int, message: object) -> None:
        if user_id == self.uid or self.ctx.services is None:
            self.mailbox.post(message)
        else:
            self.ctx.services.post(user_id, message)

    # ---- replies ---------------------------------------------------------------------------
    async def say(self, key: str, keyboard: Keyboard | None = None, **values: object) -> int | None:
        return await self.send(t(self.lang, key, **values), keyboard)

    async def send(self, text: str, keyboard: Keyboard | None = None) -> int | None:
        if self.blocked:
            return None
        try:
            return await self.ctx.outbox.send_text(self.user.chat_id, text, keyboard)
        except RecipientGone:
            await self.mark_blocked()
        except RecipientUnreachable as exc:  # not a block: the next message may get through
            self.log.warning("reply not sent: {}", exc)
        except TelegramRefused as exc:  # e.g. too long: say so in a line that fits
            self.log.error("reply refused: {}", exc)
            return await self.ctx.outbox.send_text(self.user.chat_id, t(self.lang, "send_failed"))
        return None

    async def mark_blocked(self) -> None:
        if not self.blocked:
            self.blocked = True
            self.log.info("user blocked the bot; no more messages to them")
            await self.row_write.landed()  # a new user's row, to hold the flag
            await sessions.set_blocked(self.uid)

    async def _unblocked(self) -> None:
        # They wrote to us again, so they unblocked the bot.
        await sessions.set_blocked(self.uid, False)
        self.blocked = False

    async def save(self, *, consent: bool = False) -> None:
        await sessions.save_session(
            self.uid, self.conv.state.value, self.conv.snapshot(), consent=consent
        )


def _from_user(event: ev.Event) -> bool:
    """Did the user act (rather than Telegram reporting on a payment or a subscription)?"""
    if isinstance(event, ev.PaymentSucceeded):
        return not (event.recurring and not event.first_recurring)  # a renewal is Telegram's
    return not isinstance(event, ev.PreCheckout | ev.PaymentRefunded | ev.SubscriptionChanged)


async def _open_account(user: ev.UserInfo, free_credits: int) -> money.Account:
    """Create the user's row (with its free credits, once) or bring it up to date."""
    return await money.open_account(
        user.user_id, user.username, user.first_name, user.language_code, free_credits
    )
