"""A generation's status line: one chat message, sent at its first step and edited as it moves."""

from __future__ import annotations

from flick.i18n import t
from flick.models import queries
from flick.pipeline.job import Job
from flick.ports import Outbox, RecipientGone, RecipientUnreachable


class StatusMessage:
    """The one status message of a generation, edited as it moves.

    A status line is a nicety: a chat that cannot be reached never fails the step showing it.
    """

    def __init__(self, outbox: Outbox, job: Job, message_id: int | None) -> None:
        self.outbox = outbox
        self.job = job
        self.message_id = message_id
        self.last: str | None = None

    async def show(self, key: str, **values: object) -> None:
        text = t(self.job.lang, key, style=self.job.style.label(self.job.lang), **values)
        if text == self.last:
            return
        self.last = text
        try:
            if self.message_id is None:
                self.message_id = await self.outbox.send_text(self.job.chat_id, text)
                await queries.update_generation(
                    self.job.generation_id, status_message_id=self.message_id
                )
            else:
                await self.outbox.edit_text(self.job.chat_id, self.message_id, text)
        except RecipientGone:
            pass
        except RecipientUnreachable:
            pass  # a status line is a nicety; the video's delivery retries on its own

    async def delete_or_done(self) -> None:
        await self.show("status_done")

    async def forget(self) -> None:
        self.last = None
