"""What one generation's run works from: the `Job` a user's actor hands over, the `Run` state of
one attempt at it, and the budgets.

Apart from the runner so that its helpers (`status`, `predictions`) can name them without
importing the runner that imports them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from flick.fsm.generation import GenerationRecord
from flick.media import VideoMeta
from flick.styles import Style


@dataclass
class Job:
    generation_id: int
    user_id: int
    chat_id: int
    lang: str
    style: Style
    # Set before the task is cancelled: a user's /cancel also cancels the prediction, a shutdown
    # leaves it running so the next start can collect it.
    user_canceled: bool = False
    #: The paid step under way whose result is not saved yet ("compose": the image model's call
    #: and the saving of the combined image), else None. A graceful stop lets such a step finish
    #: within its drain time instead of paying for it again after the restart.
    paid_step: str | None = None
    #: Set by a graceful stop while the paid step runs: park the generation once it is saved.
    stop_after_step: bool = False
    #: Set when the video could not be sent because the user blocked the bot: their actor
    #: marks them (every write about a user goes through its actor).
    recipient_gone: bool = False
    #: Set when a step found the generation ended or moved on without this run (a /cancel, or
    #: another process that took its job over while this one was frozen): nothing of this
    #: run's is left to hand on.
    ended_elsewhere: bool = False
    #: Set once the AI work is done and the video checked (the point of no return), when this
    #: process delivers it: the AI seat goes to the next generation while this one is sent.
    ai_done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class PipelineConfig:
    compose_budget: float = 180.0
    animate_budget: float = 600.0
    deliver_budget: float = 300.0
    poll_interval: float = 2.0
    starting_timeout: float = 300.0
    max_video_bytes: int = 200 * 1024 * 1024
    usd_per_second: float = 0.0
    #: How long a step that gives up waits for a prediction still being created, to cancel it.
    create_grace: float = 30.0


@dataclass(eq=False)
class Run:
    """One run of a generation: its record, plus what lives only as long as this run."""

    record: GenerationRecord
    #: The downloaded video's temporary file, from the animate step to delivery.
    local_video: Path | None = None
    #: The composed picture this run saved, so the animate step need not read it back from S3.
    combined: bytes | None = None
    #: Its size, length and thumbnail, read before the point of no return (None: not yet).
    video_meta: VideoMeta | None = None
    #: The create under way, so a stop or a give-up can wait for its id.
    creating: asyncio.Future[None] | None = None
    #: The prediction ids this run created or adopted: never adopted again once given up on.
    tried: set[str] = field(default_factory=set)
