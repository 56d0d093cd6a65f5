"""One user's actor: a mailbox loop that fires state-machine triggers and runs their effects.

Everything about one user happens here, one message at a time, so a user's flow needs no locks.
Slow work (downloading a photo, a generation) runs as a separate task that reports back into the
mailbox; the loop itself only waits on the database and on sending replies.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.context import Context
from flick.actors.mailbox import Mailbox
from flick.admin import commands as admin
from flick.errors import FinalError
from flick.fsm.conversation import Conversation, State, attach, detach
from flick.i18n import pick_language, t
from flick.models import ledger, queries
from flick.payments import flow as payments
from flick.payments.packages import keyboard as packages_keyboard
from flick.pipeline import photos
from flick.pipeline.generation import Job
from flick.ports import Button, Keyboard, RecipientGone
from flick.storage import photo_key
from flick.untrusted import parse_int


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
        self._intakes: set[asyncio.Task[None]] = set()
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
        saved = await queries.load_session(u.user_id)
        if saved is not None:
            self.conv.restore(*saved)
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
                    if self._intakes or len(self.mailbox):
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
            await self._gone()
            return None

    async def _gone(self) -> None:
        if not self.blocked:
            self.blocked = True
            self.log.info("user blocked the bot; no more messages to them")
            await queries.set_blocked(self.uid)

    def new_conversation(self) -> None:
        """Forget the collected photos; downloads still in flight will report as stale."""
        self.conv.clear()
        self.pending_photos = 0

    async def save(self) -> None:
        await queries.save_session(self.uid, self.conv.state.value, self.conv.snapshot())

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
        handler: Any = _HANDLERS.get(type(message))
        if handler is None:
            self.log.warning("no handler for {}", type(message).__name__)
            return
        await handler(self, message)

    async def on_command(self, e: ev.Command) -> None:
        if e.name in admin.COMMANDS:
            await admin.handle(self, e)
            return
        handler = _COMMANDS.get(e.name)
        if handler is None:
            await self.say("unknown_command")
            return
        await handler(self, e)

    async def on_text(self, e: ev.Text) -> None:
        state = self.conv.state
        key = {
            State.WAITING_FOR_PHOTOS: "expect_photos",
            State.CHOOSING_STYLE: "expect_style",
            State.PROCESSING: "busy",
            State.CONSENT: "expect_consent",
        }.get(state, "hint_create")
        await self.say(key)

    async def on_unsupported(self, e: ev.Unsupported) -> None:
        if self.conv.state is State.WAITING_FOR_PHOTOS:
            await self.say(
                "not_a_photo",
                kind=t(self.lang, f"kind_{e.kind}") if f"kind_{e.kind}" in _KINDS else e.kind,
            )
        else:
            await self.on_text(ev.Text(e.user, e.event_id, ""))

    # ---- commands --------------------------------------------------------------------------
    async def cmd_start(self, e: ev.Command) -> None:
        price = min(p.stars for p in self.ctx.packages)
        await self.say(
            "welcome",
            name=self.user.first_name or "",
            balance=self.conv.balance,
            price=price,
            keyboard=((Button(t(self.lang, "button_create"), "create"),),),
        )

    async def cmd_help(self, e: ev.Command) -> None:
        await self.say("help")

    async def cmd_balance(self, e: ev.Command) -> None:
        await self.say("balance", balance=self.conv.balance)

    async def cmd_create(self, e: ev.Command | None = None) -> None:
        if self.conv.state is State.PROCESSING:
            await self.say("busy")
            return
        if not self.conv.trigger("create"):
            await self.offer_packages("no_credits")
            return
        self.new_conversation()
        if self.conv.state is State.CONSENT:
            await self.say(
                "consent_ask",
                keyboard=((Button(t(self.lang, "button_consent"), "consent"),),),
                terms=self.ctx.settings.terms_text,
            )
        else:
            await self.show_styles()
        await self.save()

    async def show_styles(self) -> None:
        buttons = [Button(s.label(self.lang), f"style:{s.key}") for s in self.ctx.styles.values()]
        rows = tuple(tuple(buttons[i : i + 2]) for i in range(0, len(buttons), 2))
        self.conv.picker_message_id = await self.say("pick_style", keyboard=rows)

    async def cmd_cancel(self, e: ev.Command | None = None) -> None:
        state, gen_id = self.conv.state, self.conv.generation_id
        if state is State.IDLE:
            await self.say("nothing_to_cancel")
            return
        self.conv.trigger("cancel")
        self.new_conversation()
        await self.save()
        if state is State.PROCESSING and gen_id is not None:
            if self.ctx.services is not None:
                self.ctx.services.cancel_generation(gen_id)
            balance = await ledger.refund_generation(gen_id, "canceled", "canceled", "by the user")
            if balance is None:  # it was delivered (or ended) a moment before: nothing to refund
                await self.say("canceled")
            else:
                self.conv.balance = balance
                await self.say("canceled_refunded", balance=balance)
        else:
            await self.say("canceled")

    async def cmd_buy(self, e: ev.Command | None = None) -> None:
        await self.offer_packages("buy_intro")

    async def offer_packages(self, key: str) -> None:
        await self.say(
            key, balance=self.conv.balance, keyboard=packages_keyboard(self.ctx.packages, self.lang)
        )

    async def cmd_history(self, e: ev.Command) -> None:
        rows = await queries.recent_generations(self.uid)
        if not rows:
            await self.say("history_empty")
            return
        lines, buttons = [], []
        for row in rows:
            style = self.ctx.styles.get(row["style"])
            title = style.label(self.lang) if style else row["style"]
            lines.append(
                t(
                    self.lang,
                    "history_line",
                    id=row["id"],
                    style=title,
                    status=t(self.lang, f"gen_status_{row['status']}"),
                    date=row["created_at"].strftime("%Y-%m-%d %H:%M"),
                )
            )
            if row["status"] == "done" and row["video_key"]:
                buttons.append(
                    (Button(t(self.lang, "button_resend", id=row["id"]), f"video:{row['id']}"),)
                )
                link = await self.ctx.storage.presign(row["video_key"])
                if link:
                    buttons.append((Button(t(self.lang, "button_link", id=row["id"]), url=link),))
        await self.send(t(self.lang, "history_title") + "\n" + "\n".join(lines), tuple(buttons))

    async def cmd_language(self, e: ev.Command) -> None:
        await self.say(
            "language_pick",
            keyboard=((Button("English", "lang:en"), Button("Русский", "lang:ru")),),
        )

    async def cmd_terms(self, e: ev.Command) -> None:
        await self.say("terms", terms=self.ctx.settings.terms_text)

    async def cmd_paysupport(self, e: ev.Command) -> None:
        await payments.paysupport(self)

    # ---- buttons ---------------------------------------------------------------------------
    async def on_button(self, e: ev.ButtonPress) -> None:
        kind, _, arg = e.data.partition(":")
        handler = _BUTTONS.get(kind)
        if handler is None:
            self.log.info("unknown callback data {!r}", e.data[:64])
            await self.ctx.outbox.answer_button(e.callback_id, t(self.lang, "button_stale"))
            return
        await handler(self, e, arg)

    async def btn_create(self, e: ev.ButtonPress, arg: str) -> None:
        await self.ctx.outbox.answer_button(e.callback_id)
        await self.cmd_create()

    async def btn_style(self, e: ev.ButtonPress, arg: str) -> None:
        if not self.conv.trigger("pick_style", style=arg, message_id=e.message_id):
            await self.ctx.outbox.answer_button(e.callback_id, t(self.lang, "button_stale"))
            return
        await self.ctx.outbox.answer_button(e.callback_id)
        self.conv.style = arg
        await self.save()
        await self.say("send_photos", style=self.ctx.styles[arg].label(self.lang))

    async def btn_consent(self, e: ev.ButtonPress, arg: str) -> None:
        if not self.conv.trigger("consent"):
            await self.ctx.outbox.answer_button(e.callback_id, t(self.lang, "button_stale"))
            return
        await self.ctx.outbox.answer_button(e.callback_id)
        await queries.set_consent(self.uid)
        self.conv.consented = True
        await self.show_styles()
        await self.save()

    async def btn_language(self, e: ev.ButtonPress, arg: str) -> None:
        if arg not in ("en", "ru"):
            await self.ctx.outbox.answer_button(e.callback_id, t(self.lang, "button_stale"))
            return
        self.lang = arg
        await queries.set_language(self.uid, arg)
        await self.ctx.outbox.answer_button(e.callback_id)
        await self.say("language_set")

    async def btn_buy(self, e: ev.ButtonPress, arg: str) -> None:
        await payments.buy_pressed(self, e, arg)

    async def btn_video(self, e: ev.ButtonPress, arg: str) -> None:
        await self.ctx.outbox.answer_button(e.callback_id)
        gen_id = parse_int(arg)
        row = await queries.get_generation(gen_id) if gen_id is not None else None
        if row is None or row["user_id"] != self.uid or row["status"] != "done":
            await self.say("video_gone")
            return
        try:
            file_id = await self.ctx.outbox.send_video(
                self.user.chat_id,
                row["video_key"],
                t(self.lang, "video_again"),
                file_id=row["video_file_id"],
            )
        except RecipientGone:
            await self._gone()
            return
        if file_id != row["video_file_id"]:
            await queries.update_generation(row["id"], video_file_id=file_id)

    async def btn_cancel(self, e: ev.ButtonPress, arg: str) -> None:
        await self.ctx.outbox.answer_button(e.callback_id)
        await self.cmd_cancel()

    # ---- photos ----------------------------------------------------------------------------
    async def on_photo(self, e: ev.Photo) -> None:
        state = self.conv.state
        if state is State.PROCESSING:
            await self.say("busy")
            return
        if state is not State.WAITING_FOR_PHOTOS:
            await self.say(_EXPECT.get(state, "hint_create"))
            return
        if len(self.conv.photos) == 2 and self.conv.balance < 1:
            await self.offer_packages("no_credits_photos_kept")
            return
        if len(self.conv.photos) + self.pending_photos >= 2:
            await self.say("photos_enough")
            return
        size = e.photo.size or 0
        if size > self.ctx.photo_limits.max_bytes:
            await self.say("photo_too_big", mb=self._limit_mb())
            return
        self.pending_photos += 1
        task = asyncio.create_task(self._intake(e.photo, self.conv.epoch))
        self._intakes.add(task)
        task.add_done_callback(self._intakes.discard)

    def _limit_mb(self) -> str:
        return f"{round(self.ctx.photo_limits.max_bytes / 2**20, 1):g}"

    async def _intake(self, photo: ev.PhotoRef, epoch: int) -> None:
        """Download, check and store one photo; report to the mailbox. Runs beside the loop."""
        report: object
        try:
            data = await photos.read_limited(
                self.ctx.outbox.download(photo), self.ctx.photo_limits.max_bytes
            )
            jpeg = await photos.normalize(data, self.ctx.photo_limits)
            key = photo_key(self.uid, datetime.now(UTC), photo.file_unique_id)
            await self.ctx.storage.put(key, jpeg, "image/jpeg")
            report = msg.PhotoStored(key, epoch)
        except photos.PhotoRejected as exc:
            report = msg.PhotoRejected(exc.reason, epoch)
        except Exception:
            self.log.exception("photo intake failed")
            report = msg.PhotoRejected("photo_failed", epoch)
        self.mailbox.post(report)

    async def on_photo_stored(self, m: msg.PhotoStored) -> None:
        if m.epoch != self.conv.epoch:
            return  # from a conversation the user cancelled; the file stays as a record
        self.pending_photos = max(0, self.pending_photos - 1)
        if not self.conv.trigger("photo_stored"):
            return  # the user cancelled or moved on meanwhile; the file stays as a record
        self.conv.photos.append(m.key)
        await self.save()
        if len(self.conv.photos) == 1:
            await self.say("photo_one_more")
            return
        await self.start_generation()

    async def on_photo_rejected(self, m: msg.PhotoRejected) -> None:
        if m.epoch != self.conv.epoch:
            return
        self.pending_photos = max(0, self.pending_photos - 1)
        await self.say(
            m.reason,
            mb=self._limit_mb(),
            side=self.ctx.photo_limits.max_side,
        )

    # ---- generation ------------------------------------------------------------------------
    async def start_generation(self) -> None:
        style = self.conv.style or ""
        if not self.conv.trigger("generate"):
            # Keep the two photos: the generation starts as soon as a payment arrives.
            await self.offer_packages("no_credits_photos_kept")
            return
        started = await ledger.start_generation(
            self.uid,
            style,
            (self.conv.photos[0], self.conv.photos[1]),
            self.ctx.runner.image.name,
            self.ctx.runner.video.name,
        )
        if started is None:  # the database disagrees with memory: the database wins
            self.conv.trigger("cancel")
            self.conv.state = State.WAITING_FOR_PHOTOS  # back to waiting, photos kept
            await self.save()
            await self.offer_packages("no_credits_photos_kept")
            return
        self.conv.generation_id, self.conv.balance = started
        await self.save()
        self.ctx.on_metric("credits_spent", {}, 1)
        self._launch(self.conv.generation_id)

    async def continue_after_top_up(self) -> None:
        """Two photos were waiting for credit: now that there is some, make the video."""
        if self.conv.state is State.WAITING_FOR_PHOTOS and len(self.conv.photos) == 2:
            await self.start_generation()

    def _launch(self, gen_id: int) -> None:
        style = self.ctx.styles.get(self.conv.style or "")
        if style is None or self.ctx.services is None:
            self.mailbox.post(msg.GenerationEnded(gen_id, _lost("the style is no longer offered")))
            return
        job = Job(gen_id, self.uid, self.user.chat_id, self.lang, style)
        self.ctx.services.start_generation(job)

    async def on_resume(self, m: msg.ResumeGeneration) -> None:
        if self.ctx.services and self.ctx.services.generation_running(m.generation_id):
            return
        row = await queries.get_generation(m.generation_id)
        if row is None or row["refunded"] or row["status"] in ("done", "failed", "canceled"):
            return
        self.conv.trigger("resume")
        self.conv.generation_id = m.generation_id
        self.conv.style = row["style"]
        await self.save()
        self.log.info("resuming generation {} at {}", m.generation_id, row["status"])
        self._launch(m.generation_id)

    async def on_generation_ended(self, m: msg.GenerationEnded) -> None:
        current = self.conv.trigger("finish", generation_id=m.generation_id)
        if current:
            self.new_conversation()
            await self.save()
        if m.error is None:
            self.ctx.on_metric("generation", {"outcome": "done", "error_class": ""}, 1)
            return
        balance = await ledger.refund_generation(
            m.generation_id, "failed", m.error.kind, str(m.error)
        )
        self.ctx.on_metric("generation", {"outcome": "failed", "error_class": m.error.kind}, 1)
        if balance is None:
            return  # already refunded (a /cancel got there first)
        self.conv.balance = balance
        self.log.bind(generation_id=m.generation_id).warning(
            "generation failed ({}): {}", m.error.kind, m.error
        )
        await self.say(
            f"failed_{m.error.user_reason}",
            balance=balance,
            keyboard=((Button(t(self.lang, "button_another"), "create"),),),
        )

    # ---- money from elsewhere ---------------------------------------------------------------
    async def on_grant(self, m: msg.Grant) -> None:
        self.conv.balance = await ledger.grant(self.uid, m.credits, m.note)
        if m.credits > 0:
            await self.say("granted", credits=m.credits, balance=self.conv.balance)
            await self.continue_after_top_up()

    async def on_balance_changed(self, m: msg.BalanceChanged) -> None:
        self.conv.balance = m.balance
        if m.notice:
            await self.say(m.notice, balance=m.balance)

    async def on_crash(self, m: msg.Crash) -> None:
        raise RuntimeError("crash requested (test hook)")


def _lost(reason: str) -> FinalError:
    return FinalError(reason, kind="lost", user_reason="generic")


_EXPECT = {
    State.CHOOSING_STYLE: "expect_style",
    State.CONSENT: "expect_consent",
}

_KINDS = {
    "kind_sticker",
    "kind_voice",
    "kind_video",
    "kind_location",
    "kind_contact",
    "kind_document",
    "kind_audio",
    "kind_animation",
    "kind_video_note",
    "kind_other",
}

_HANDLERS = {
    ev.Command: UserActor.on_command,
    ev.Text: UserActor.on_text,
    ev.Photo: UserActor.on_photo,
    ev.Unsupported: UserActor.on_unsupported,
    ev.ButtonPress: UserActor.on_button,
    ev.PreCheckout: payments.pre_checkout,
    ev.PaymentSucceeded: payments.succeeded,
    ev.PaymentRefunded: payments.refunded,
    msg.PhotoStored: UserActor.on_photo_stored,
    msg.PhotoRejected: UserActor.on_photo_rejected,
    msg.GenerationEnded: UserActor.on_generation_ended,
    msg.ResumeGeneration: UserActor.on_resume,
    msg.Grant: UserActor.on_grant,
    msg.BalanceChanged: UserActor.on_balance_changed,
    msg.Crash: UserActor.on_crash,
}

_COMMANDS = {
    "start": UserActor.cmd_start,
    "help": UserActor.cmd_help,
    "create": UserActor.cmd_create,
    "generate": UserActor.cmd_create,
    "cancel": UserActor.cmd_cancel,
    "balance": UserActor.cmd_balance,
    "buy": UserActor.cmd_buy,
    "history": UserActor.cmd_history,
    "language": UserActor.cmd_language,
    "terms": UserActor.cmd_terms,
    "paysupport": UserActor.cmd_paysupport,
}

_BUTTONS = {
    "create": UserActor.btn_create,
    "style": UserActor.btn_style,
    "consent": UserActor.btn_consent,
    "lang": UserActor.btn_language,
    "buy": UserActor.btn_buy,
    "video": UserActor.btn_video,
    "cancel": UserActor.btn_cancel,
}
