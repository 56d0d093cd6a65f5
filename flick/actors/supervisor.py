"""The supervisor: one actor per user, spawned on demand, stopped when idle, restarted on crash.

It also owns what must outlive an actor: the generation tasks (an actor may idle-stop or crash
while its user's video renders) and the one global AI limiter, which lives in the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from functools import partial
from types import TracebackType
from typing import Any

from loguru import logger

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.admission import Admission
from flick.actors.context import Context
from flick.actors.incidents import Incidents
from flick.actors.journal import UpdateJournal
from flick.actors.mailbox import Mailbox
from flick.actors.user import UserActor
from flick.errors import FinalError
from flick.i18n import pick_language, t
from flick.models import generation_jobs, generations
from flick.models.generation_jobs import Outcome
from flick.pipeline.runner import Job
from flick.ports import RecipientGone, RecipientUnreachable
from flick.retries import retry_transient
from flick.work import signals
from flick.work.job_records import job_for
from flick.work.tasks import Ended, GenerationTasks

_MONEY = (ev.PreCheckout, ev.PaymentSucceeded, ev.PaymentRefunded, ev.SubscriptionChanged)


class Supervisor:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        ctx.services = self
        self.actors: dict[int, UserActor] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._mailboxes: dict[int, Mailbox] = {}
        self._users: dict[int, ev.UserInfo] = {}
        self.generations = GenerationTasks(ctx.runner.run, self._generation_ended)
        self._stopped = False
        #: Stops the queue handing this process generations (set by whoever runs the queue).
        self.stop_taking: Callable[[], None] = lambda: None
        self._groups_told: set[int] = set()
        self.accepting = False
        self.crashes = 0
        self._side_tasks: set[asyncio.Task[None]] = set()
        # Photo downloads report into a mailbox, not to the actor that started them, so they
        # are owned here: a crashed or idle-stopped actor's download must still land.
        self._intakes: dict[int, set[asyncio.Task[None]]] = {}
        self.journal = UpdateJournal()
        self.incidents = Incidents()
        self._restarts: dict[int, asyncio.TimerHandle] = {}  # actors waiting out a backoff
        settings = ctx.settings
        self.admission = Admission(
            settings.admission_slots,
            defer_after=settings.defer_after_seconds,
            newest_first_after=settings.newest_first_after_seconds,
            notices_per_second=settings.busy_notices_per_second,
            on_defer=self._deferred,
        )

    # ---- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        await self.journal.__aenter__()
        self.accepting = True

    async def resume_unfinished(self) -> int:
        """After a restart: hand each unfinished generation back to its user's actor."""
        records = await generations.unfinished()
        for record in records:
            self.post(record.user_id, msg.ResumeGeneration(record.id))
        return len(records)

    async def stop(self, drain_seconds: float = 30.0) -> None:
        """Stop taking events, drain every mailbox, then stop generations at a resumable point.

        A generation inside a paid step whose result is not saved yet (the image model composing,
        tens of seconds) may finish that step within what is left of `drain_seconds`: cancelled,
        it would be paid again after the restart. The others (waiting for the limiter, animating:
        resumable from the saved prediction id) are stopped at once, so none starts a paid step.
        """
        if self._stopped:
            return
        self._stopped = True
        self.stop_taking()
        self.accepting = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds

        async def drain() -> None:
            while loop.time() < deadline and (  # noqa: ASYNC110 - a few flags, at shutdown
                any(len(m) for m in self._mailboxes.values())
                or any(a.busy or a.pending_photos for a in self.actors.values())
                or self._intakes
            ):
                await asyncio.sleep(0.01)

        await drain()
        await self.generations.stop(deadline)
        await drain()  # a step that failed meanwhile reported it: its refund is made now
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        intakes = [task for tasks in self._intakes.values() for task in tasks]
        for task in intakes:  # still downloading after the drain: the user sends it again
            task.cancel()
        await asyncio.gather(*intakes, return_exceptions=True)
        for handle in self._restarts.values():
            handle.cancel()
        self._restarts.clear()
        self._tasks.clear()
        self.actors.clear()
        await self.admission.close()
        await self.journal.__aexit__(None, None, None)

    # ---- routing ---------------------------------------------------------------------------
    async def dispatch(self, event: ev.Event | ev.GroupMessage) -> None:
        if isinstance(event, ev.GroupMessage):
            await self._tell_group(event)
            return
        if not self.accepting:
            return
        uid = event.user.user_id
        self._users[uid] = event.user
        mailbox = self._mailbox(uid)
        if isinstance(event, _MONEY):
            mailbox.post(event)  # a payment is never dropped by the flood guard
            self.admission.promote(uid)  # nor kept waiting by a surge
        elif not mailbox.offer(event):
            await self._flooded(event.user, mailbox)
            return
        self._ensure_running(uid)

    def post(self, user_id: int, message: object) -> None:
        """A report for a user's actor (from a task or an operator): never dropped."""
        self._mailbox(user_id).post(message)
        self.admission.promote(user_id)
        self._ensure_running(user_id)

    # ---- what kurigram's queue asks (flick/telegram/urgent.py) ------------------------------
    def has_room(self) -> bool:
        """A new user's update would be admitted at once."""
        return self.admission.has_room()

    def knows(self, user_id: int) -> bool:
        """This user's actor runs (or waits out a backoff): they are mid-conversation."""
        return user_id in self._mailboxes

    def watch_room(self, wake: Callable[[], None]) -> None:
        self.admission.on_room = wake

    def _mailbox(self, uid: int) -> Mailbox:
        mailbox = self._mailboxes.get(uid)
        if mailbox is None:
            mailbox = self._mailboxes[uid] = Mailbox(self.ctx.settings.mailbox_size)
        return mailbox

    def _ensure_running(self, uid: int) -> None:
        if uid in self._tasks or uid in self._restarts:
            return  # running, or waiting out a crash backoff (its mailbox keeps the messages)
        user = self._users.get(uid) or ev.UserInfo(uid, uid)
        actor = UserActor(user, self.ctx, self._mailbox(uid), self.journal, self.admission)
        self.admission.expect()  # its first step asks for a slot (kurigram's queue counts it)
        self.actors[uid] = actor
        task = asyncio.create_task(actor.run(), name=f"actor-{uid}")
        self._tasks[uid] = task
        # A partial, not a closure: three fewer objects per live actor for the collector (#19).
        task.add_done_callback(partial(self._ended, actor))

    def _ended(self, actor: UserActor, task: asyncio.Task[None]) -> None:
        uid = actor.uid
        if self._tasks.get(uid) is task:
            del self._tasks[uid]
            self.actors.pop(uid, None)
        if task.cancelled():
            return
        exc = task.exception()
        mailbox = self._mailboxes.get(uid)
        if exc is None:
            self.incidents.close(uid)
            # Idle stop. A message that arrived in the last instant still gets an actor.
            if mailbox is not None and (len(mailbox) or uid in self._intakes):
                self._ensure_running(uid)
            elif mailbox is not None:
                del self._mailboxes[uid]
                self._users.pop(uid, None)
            return
        self.crashes += 1
        logger.opt(exception=exc).bind(user_id=uid).error("actor crashed; restarting it")
        delay, apologise = self.incidents.crashed(uid, recovered=actor.handled_ok > 0)
        if apologise:
            apology = asyncio.create_task(self._apologise(actor))
            self._side_tasks.add(apology)
            apology.add_done_callback(self._side_tasks.discard)
        if self.accepting or (mailbox is not None and len(mailbox)):
            self._restarts[uid] = asyncio.get_running_loop().call_later(delay, self._restart, uid)

    def _restart(self, uid: int) -> None:
        self._restarts.pop(uid, None)
        self._ensure_running(uid)

    async def _apologise(self, actor: UserActor) -> None:
        with contextlib.suppress(RecipientGone, Exception):
            await self.ctx.outbox.send_text(actor.user.chat_id, t(actor.lang, "crash_sorry"))

    def _deferred(self, uid: int) -> None:
        """A user's update waits out a surge: tell them once (it stays in their mailbox)."""
        actor = self.actors.get(uid)
        user = self._users.get(uid) or ev.UserInfo(uid, uid)
        lang = actor.lang if actor is not None and actor.loaded else None
        lang = lang or pick_language(None, user.language_code)
        task = asyncio.create_task(self._notify(user.chat_id, t(lang, "busy_now")))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _notify(self, chat_id: int, text: str) -> None:
        with contextlib.suppress(RecipientGone, Exception):
            await self.ctx.outbox.send_text(chat_id, text)

    async def _flooded(self, user: ev.UserInfo, mailbox: Mailbox) -> None:
        if mailbox.flood_warned:
            return
        mailbox.flood_warned = True
        actor = self.actors.get(user.user_id)  # it knows a /language choice; Telegram does not
        lang = (
            actor.lang
            if actor is not None and actor.loaded
            else pick_language(None, user.language_code)
        )
        with contextlib.suppress(RecipientGone, RecipientUnreachable):
            await self.ctx.outbox.send_text(user.chat_id, t(lang, "slow_down"))

    async def _tell_group(self, event: ev.GroupMessage) -> None:
        if event.chat_id in self._groups_told:
            return
        self._groups_told.add(event.chat_id)
        with contextlib.suppress(RecipientGone, Exception):
            await self.ctx.outbox.send_text(event.chat_id, t("en", "private_only"))

    # ---- generations -----------------------------------------------------------------------
    def start_generation(self, job: Job, handed_over: bool = False) -> bool:
        """A user's generation: its job is in the queue (handed over with its charge, or now,
        when resumed); it runs here when the queue hands it to this process, or on a worker."""
        if self.generations.running(job.generation_id):
            return False
        if not handed_over:
            self._side(self._hand_over(job.generation_id))
        return True

    async def _hand_over(self, generation_id: int) -> None:
        async def once() -> None:
            if not await generation_jobs.pending(generation_id):  # e.g. a video to send
                await generation_jobs.hand_over(None, generation_id)

        def told(exc: BaseException, attempt: int) -> None:
            logger.warning("handing generation {} over: {}", generation_id, exc)

        await retry_transient(once, budget=None, on_retry=told)

    async def run_generation(self, generation_id: int) -> None:
        """The queue's handler on the gateway: run (or deliver) the generation here."""
        found = await job_for(generation_id, self.ctx.styles)
        if found is None:
            return  # it ended meanwhile (a /cancel, a refund)
        if found.job is None:
            self.post(found.record.user_id, msg.GenerationEnded(generation_id, found.error))
            return
        await self.generations.run(found.job)

    async def settle(self, outcome: Outcome) -> None:
        """A worker's generation came back: deliver its stored video, or report its failure."""
        if outcome.error is None:
            await self.run_generation(outcome.generation_id)
            return
        record = await generations.get(outcome.generation_id)
        if record is None:
            return
        kind, reason, text = outcome.error
        error = FinalError(text, kind=kind, user_reason=reason)
        self.post(
            record.user_id,
            msg.GenerationEnded(outcome.generation_id, error, outcome.recipient_gone),
        )

    async def _generation_ended(self, ended: Ended) -> None:
        job = ended.job
        self.post(
            job.user_id, msg.GenerationEnded(job.generation_id, ended.error, job.recipient_gone)
        )

    def cancel_generation(self, generation_id: int) -> bool:
        if self.generations.cancel(generation_id):
            return True
        self._side(signals.cancel_elsewhere(generation_id))  # a worker may be running it
        return False

    def generation_running(self, generation_id: int) -> bool:
        return self.generations.running(generation_id)

    @property
    def generations_running(self) -> int:
        return len(self.generations)

    def _side(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # ---- photo intakes ---------------------------------------------------------------------
    def track_intake(self, user_id: int, task: asyncio.Task[None]) -> None:
        tasks = self._intakes.setdefault(user_id, set())
        tasks.add(task)
        task.add_done_callback(lambda done: self._intake_done(user_id, done))

    def _intake_done(self, user_id: int, task: asyncio.Task[None]) -> None:
        tasks = self._intakes.get(user_id)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._intakes[user_id]

    def intakes_running(self, user_id: int | None = None) -> int:
        if user_id is None:
            return sum(len(tasks) for tasks in self._intakes.values())
        return len(self._intakes.get(user_id, ()))

    def mailbox_depth(self) -> int:
        return sum(len(m) for m in self._mailboxes.values())
