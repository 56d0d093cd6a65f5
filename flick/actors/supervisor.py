"""The supervisor: one actor per user, spawned on demand, stopped when idle, restarted on crash.

It also owns what must outlive an actor: the generation tasks (an actor may idle-stop or crash
while its user's video renders) and the one global AI limiter, which lives in the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from loguru import logger

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.admission import Admission
from flick.actors.context import Context
from flick.actors.incidents import Incidents
from flick.actors.journal import UpdateJournal
from flick.actors.mailbox import Mailbox
from flick.actors.user import UserActor
from flick.errors import FinalError, is_transient
from flick.i18n import pick_language, t
from flick.models import generations
from flick.ops.sentry import capture_generation_failure
from flick.pipeline.runner import Job
from flick.ports import RecipientGone, RecipientUnreachable

_MONEY = (ev.PreCheckout, ev.PaymentSucceeded, ev.PaymentRefunded, ev.SubscriptionChanged)


class Supervisor:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        ctx.services = self
        self.actors: dict[int, UserActor] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._mailboxes: dict[int, Mailbox] = {}
        self._users: dict[int, ev.UserInfo] = {}
        self._generations: dict[int, tuple[Job, asyncio.Task[None]]] = {}
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
        finishing: list[asyncio.Task[None]] = []
        for job, task in list(self._generations.values()):
            job.user_canceled = False
            if job.paid_step is None:
                task.cancel()
            else:  # it parks itself once the step's result is saved (or ends if the step fails)
                job.stop_after_step = True
                finishing.append(task)
        if finishing:
            logger.info("letting {} paid step(s) finish before stopping", len(finishing))
            await asyncio.wait(finishing, timeout=max(0.0, deadline - loop.time()))
        for _, task in list(self._generations.values()):
            task.cancel()
        gens = [task for _, task in self._generations.values()]
        await asyncio.gather(*gens, return_exceptions=True)
        if finishing:
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
        self.actors[uid] = actor
        task = asyncio.create_task(actor.run(), name=f"actor-{uid}")
        self._tasks[uid] = task
        task.add_done_callback(lambda done: self._ended(uid, actor, done))

    def _ended(self, uid: int, actor: UserActor, task: asyncio.Task[None]) -> None:
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
            self._restarts[uid] = asyncio.get_running_loop().call_later(
                delay, self._restart, uid
            )

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
    def start_generation(self, job: Job) -> bool:
        if job.generation_id in self._generations:
            return False
        task = asyncio.create_task(self._generate(job), name=f"generation-{job.generation_id}")
        self._generations[job.generation_id] = (job, task)
        task.add_done_callback(lambda _: self._generations.pop(job.generation_id, None))
        return True

    async def _generate(self, job: Job) -> None:
        error: FinalError | None = None
        try:
            await self._run_through_blips(job)
        except asyncio.CancelledError:
            if job.user_canceled:
                return  # the actor already refunded
            raise  # shutdown: the row says where to resume
        except FinalError as exc:
            error = exc
            capture_generation_failure(job.generation_id, job.user_id, exc)
        except Exception as exc:  # noqa: BLE001 - any other failure still refunds
            logger.opt(exception=exc).bind(user_id=job.user_id).error(
                "generation {} failed unexpectedly", job.generation_id
            )
            capture_generation_failure(job.generation_id, job.user_id, exc)
            error = FinalError(str(exc) or type(exc).__name__, kind=type(exc).__name__)
        self.post(
            job.user_id, msg.GenerationEnded(job.generation_id, error, job.recipient_gone)
        )

    async def _run_through_blips(self, job: Job) -> None:
        """Run a generation; when our database or storage failed it for a while, resume it from
        its record (which never pays twice for a step) instead of refunding a failure of ours."""
        delay = 0.5
        while True:
            try:
                await self.ctx.runner.run(job)
                return
            except Exception as exc:
                if isinstance(exc, FinalError) or not is_transient(exc):
                    raise
                logger.bind(user_id=job.user_id).warning(
                    "generation {} interrupted ({}); resuming it in {:.1f}s",
                    job.generation_id,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def cancel_generation(self, generation_id: int) -> bool:
        entry = self._generations.get(generation_id)
        if entry is None:
            return False
        job, task = entry
        job.user_canceled = True
        task.cancel()
        return True

    def generation_running(self, generation_id: int) -> bool:
        return generation_id in self._generations

    @property
    def generations_running(self) -> int:
        return len(self._generations)

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
