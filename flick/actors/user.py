"""One user's actor: a mailbox loop that fires state-machine triggers and runs their effects.

Everything about one user happens here, one message at a time, so a user's flow needs no locks.
Slow work (downloading a photo, a generation) runs as a separate task that reports back into the
mailbox; the loop itself only waits on the database and on sending replies. This module is the
actor's core (lifecycle, replies, dispatch); what it does with each message lives in
`flick.actors.handlers`, by feature.
"""

from __future__ import annotations

from loguru import logger

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.context import Context
from flick.actors.handlers import balance, generations
from flick.actors.handlers.routes import EVENTS
from flick.actors.mailbox import Mailbox
from flick.fsm.conversation import Conversation, State, attach, detach
from flick.i18n import pick_language, t
from flick.models import ledger, queries
from flick.payments.packages import keyboard as packages_keyboard
from flick.ports import Button, Keyboard, RecipientGone, RecipientUnreachable


class UserActor:
    def __init__(self, user: ev.UserInfo, ctx: Context, mailbox: Mailbox) -> None:
        self.user = user
        self.ctx = ctx
        self.mailbox = mailbox
        self.conv = Conversation(styles=ctx.styles)
        self.lang = "en"
        self.blocked = False
        self.pending_photos = 0
        self.busy = False
        self.loaded = False
        self.log = logger.bind(user_id=user.user_id)

    # ---- lifecycle -------------------------------------------------------------------------
    async def load(self) -> None:
        u = self.user
        row = await ledger.ensure_user(
            u.user_id, u.username, u.first_name, u.language_code, self.ctx.settings.free_credits
        )
        self.conv.balance = row.balance
        self.conv.consented = row.consent
        self.blocked = row.blocked
        self.lang = pick_language(row.language, row.language_code)
        if row.session is not None:
            self.conv.restore(*row.session)
            await self._settle_stale_processing()
        attach(self.conv)

    async def _settle_stale_processing(self) -> None:
        """A stop between "delivered" and the actor hearing of it leaves the session PROCESSING
        with a generation that has ended: the user would be "busy" for good. Settle it here."""
        gen_id = self.conv.generation_id
        if self.conv.state is not State.PROCESSING:
            return
        row = await queries.get_generation(gen_id) if gen_id is not None else None
        if row is None or row["refunded"] or row["status"] in ("done", "failed", "canceled"):
            self.conv.trigger("cancel")
            self.new_conversation()
            await self.save()

    async def run(self) -> None:
        """Handle messages until idle; an exception escapes to the supervisor (crash → restart)."""
        await self.load()
        self.loaded = True
        try:
            while True:
                message = await self.mailbox.get(self.ctx.settings.actor_idle_seconds)
                if message is None:
                    if len(self.mailbox) or self._intakes_running():
                        continue
                    return
                self.busy = True
                try:
                    await self.handle(message)
                finally:
                    self.busy = False
        finally:
            # Photo downloads in flight are not cancelled: they report into the mailbox, which
            # outlives this actor (a crash restarts it on the same mailbox).
            detach(self.conv)

    def _intakes_running(self) -> int:
        return self.ctx.services.intakes_running(self.uid) if self.ctx.services else 0

    @property
    def uid(self) -> int:
        return self.user.user_id

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
            return None
        except RecipientUnreachable as exc:  # not a block: the next message may get through
            self.log.warning("reply not sent: {}", exc)
            return None

    async def mark_blocked(self) -> None:
        if not self.blocked:
            self.blocked = True
            self.log.info("user blocked the bot; no more messages to them")
            await queries.set_blocked(self.uid)

    def new_conversation(self) -> None:
        """Forget the collected photos; downloads still in flight will report as stale."""
        self.conv.clear()
        self.pending_photos = 0

    async def save(self, *, consent: bool = False) -> None:
        await queries.save_session(
            self.uid, self.conv.state.value, self.conv.snapshot(), consent=consent
        )

    async def show_styles(self) -> None:
        buttons = [Button(s.label(self.lang), f"style:{s.key}") for s in self.ctx.styles.values()]
        rows = tuple(tuple(buttons[i : i + 2]) for i in range(0, len(buttons), 2))
        self.conv.picker_message_id = await self.say("pick_style", keyboard=rows)

    async def offer_packages(self, key: str) -> None:
        await self.say(
            key, balance=self.conv.balance, keyboard=packages_keyboard(self.ctx.packages, self.lang)
        )

    # ---- dispatch --------------------------------------------------------------------------
    async def handle(self, message: object) -> None:
        if isinstance(message, ev.Event):
            if not self.mailbox.first_time(message.event_id):
                self.log.debug("ignoring redelivered update {}", message.event_id)
                return
            if self.blocked and not isinstance(message, ev.PreCheckout | ev.PaymentRefunded):
                # They wrote to us again, so they unblocked the bot.
                self.blocked = False
                await queries.set_blocked(self.uid, False)
        handler = EVENTS.get(type(message))
        if handler is None:
            self.log.warning("no handler for {}", type(message).__name__)
            return
        await handler(self, message)

    # ---- entry points for the payments flow and admin commands ------------------------------
    async def on_grant(self, m: msg.Grant) -> None:
        await balance.on_grant(self, m)

    async def continue_after_top_up(self) -> None:
        await generations.continue_after_top_up(self)
