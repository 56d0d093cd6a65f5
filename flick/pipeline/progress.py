"""A generation's progress message: one chat message, sent at its first step and edited as it
moves, ending with the generation's outcome (done, failed, canceled) — never a stale "animating…".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from flick.errors import TelegramRefused
from flick.i18n import t
from flick.models import generations
from flick.pipeline.job import Job, Run
from flick.ports import Outbox, RecipientGone, RecipientUnreachable


class Progress(Protocol):
    async def show(self, key: str, **values: object) -> None: ...

    async def forget(self) -> None: ...


#: Builds a generation's progress: a message through this process's outbox, or lines relayed
#: to the gateway's (a worker's).
ProgressFactory = Callable[[Job, Run], Progress]


class ProgressMessage:
    """The one progress message of a generation. A progress line is a nicety: a chat that cannot
    be reached, or an edit Telegram refuses, never fails the step showing it."""

    def __init__(self, outbox: Outbox, job: Job, run: Run) -> None:
        self.outbox = outbox
        self.job = job
        self.run = run
        self.last: str | None = None

    async def show(self, key: str, **values: object) -> None:
        text = t(self.job.lang, key, style=self.job.style.label(self.job.lang), **values)
        if text == self.last:
            return
        self.last = text
        record = self.run.record
        try:
            if record.status_message_id is None:
                message_id = await self.outbox.send_text(self.job.chat_id, text)
                await generations.save(record, status_message_id=message_id)
            else:
                await self.outbox.edit_text(self.job.chat_id, record.status_message_id, text)
        except (RecipientGone, RecipientUnreachable, TelegramRefused):
            pass  # the video's delivery has its own retries and errors

    async def forget(self) -> None:
        self.last = None
