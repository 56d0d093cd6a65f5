"""What a handler may use of its user's actor: a narrow interface, not the whole `UserActor`.

Handlers are plain async functions taking this and a message (as aiogram's routers take the
bot), so they never reach into the mailbox loop, the retries or the supervisor's internals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from flick import events as ev
from flick.actors.context import Context
from flick.fsm.conversation import Conversation
from flick.ports import Keyboard

if TYPE_CHECKING:
    from loguru import Logger


class Scope(Protocol):
    ctx: Context
    conv: Conversation
    user: ev.UserInfo
    lang: str
    blocked: bool

    @property
    def uid(self) -> int: ...

    @property
    def log(self) -> Logger: ...

    async def say(
        self, key: str, keyboard: Keyboard | None = None, **values: object
    ) -> int | None: ...

    async def send(self, text: str, keyboard: Keyboard | None = None) -> int | None: ...

    async def save(self, *, consent: bool = False) -> None: ...

    async def mark_blocked(self) -> None: ...

    def post(self, user_id: int, message: object) -> None:
        """A message for a user's actor (this one's included): never dropped."""

    def handled(self, event_id: str) -> None:
        """Record an update as handled now (for handlers that finish an update later)."""

    def unhandled(self, event_id: str) -> None:
        """An update that could not be handled after all: its redelivery is taken again."""
