"""A generation's `Job` rebuilt from its row, for a process that did not start it (a worker, a
gateway after a restart or a takeover): everything comes from the database, nothing from the
queue's payload but the id."""

from __future__ import annotations

from dataclasses import dataclass

from flick.errors import FinalError
from flick.fsm.generation import GenerationRecord
from flick.i18n import pick_language
from flick.models import generations
from flick.models.db import pool
from flick.pipeline.job import Job
from flick.styles import Style


@dataclass(frozen=True, slots=True)
class Found:
    record: GenerationRecord
    job: Job | None
    #: Set instead of `job` when it cannot run here: its style is no longer configured (its
    #: user's actor refunds it, as when a style is removed while a generation waits).
    error: FinalError | None = None


async def job_for(generation_id: int, styles: dict[str, Style]) -> Found | None:
    """The generation's record and job; None when it is gone or has ended."""
    record = await generations.get(generation_id)
    if record is None or not record.active:
        return None
    row = await pool().fetchrow(
        "SELECT language, language_code FROM users WHERE telegram_id = $1", record.user_id
    )
    lang = pick_language(row["language"], row["language_code"]) if row else "en"
    style = styles.get(record.style)
    if style is None:
        lost = f"the style {record.style!r} is no longer offered"
        return Found(record, None, FinalError(lost, kind="lost", user_reason="generic"))
    # Flick talks to users in private chats only, where the chat is the user.
    return Found(record, Job(record.id, record.user_id, record.user_id, lang, style))
