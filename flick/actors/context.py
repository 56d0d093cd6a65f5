"""What every actor shares: settings, ports, the runner, and the supervisor's services."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from flick.admin.broadcast import Broadcaster
from flick.payments.packages import Package
from flick.payments.plans import Plan
from flick.pipeline.imaging import PhotoLimits
from flick.pipeline.runner import GenerationRunner, Job
from flick.ports import FaceDetector, Outbox, Storage
from flick.settings import Settings
from flick.styles import Style


class Services(Protocol):
    """What the supervisor does for actors: route reports, own the generation tasks."""

    def post(self, user_id: int, message: object) -> None: ...

    def start_generation(self, job: Job, handed_over: bool = False) -> bool: ...

    def cancel_generation(self, generation_id: int) -> bool: ...

    def generation_running(self, generation_id: int) -> bool: ...

    def track_intake(self, user_id: int, task: asyncio.Task[None]) -> None:
        """Own a photo download that reports into the user's mailbox (it outlives a crash)."""

    def intakes_running(self, user_id: int) -> int: ...


@dataclass
class Context:
    settings: Settings
    styles: dict[str, Style]
    packages: tuple[Package, ...]
    outbox: Outbox
    storage: Storage
    runner: GenerationRunner
    photo_limits: PhotoLimits
    services: Services | None = None
    admin_ids: frozenset[int] = frozenset()
    broadcaster: Broadcaster | None = None
    on_metric: Callable[[str, dict[str, str], float], None] = field(
        default=lambda name, labels, value: None
    )
    plans: dict[str, Plan] = field(default_factory=dict)
    bot_username: str | None = None  # for invite links: BOT_USERNAME, or learned from Telegram
    faces: FaceDetector | None = None  # None: FACE_CHECK is off
