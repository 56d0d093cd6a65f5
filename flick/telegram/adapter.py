"""Kurigram handlers: every update the bot gets becomes one engine event, or is dropped.

Kurigram parses the raw MTProto update; `flick.telegram.translate` turns the parsed object into
an event; `dispatch` (the supervisor) takes it from there. Nothing raised in here reaches
kurigram: one bad update must not cost the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pyrogram
from loguru import logger
from pyrogram import Client, types
from pyrogram.handlers import (
    CallbackQueryHandler,
    EditedMessageHandler,
    MessageHandler,
    PreCheckoutQueryHandler,
    RawUpdateHandler,
)

from flick.events import Event, GroupMessage
from flick.telegram.translate import (
    Translated,
    callback_event,
    message_event,
    pre_checkout_event,
    subscription_event,
)
from flick.telegram.urgent import Gate, urgent_first

# The generated `raw` package's `import *` re-exports are invisible to strict mypy.
_raw: Any = pyrogram.raw

Dispatch = Callable[[Event | GroupMessage], Awaitable[None]]


class TelegramAdapter:
    """Registers the bot's handlers on `client` and hands each update's event to `dispatch`."""

    def __init__(self, client: Client, dispatch: Dispatch, *, group: int = 0) -> None:
        self.client = client
        self.dispatch = dispatch
        self.group = group
        self.dispatched = 0
        self.dropped = 0
        self.failed = 0
        self._handlers: list[Any] = []

    def install(self) -> None:
        """Register the handlers. Call before the client starts so no update finds none."""
        if self._handlers:
            return
        self._handlers = [
            MessageHandler(self._on_message),
            EditedMessageHandler(self._on_edited),
            CallbackQueryHandler(self._on_callback),
            PreCheckoutQueryHandler(self._on_pre_checkout),
            # Last in the group: kurigram gives it only what no handler above took.
            RawUpdateHandler(self._on_raw),
        ]
        for handler in self._handlers:
            self.client.add_handler(handler, self.group)
        # Past capacity, money must not wait behind the backlog of other updates.
        urgent_first(self.client.dispatcher.updates_queue)

    def hold_new_users(self, gate: Gate) -> None:
        """New users' updates wait unparsed in kurigram's queue until the engine (`gate`) has
        room for them (flick/telegram/urgent.py): past capacity, no work goes into an update
        that would only wait."""
        urgent_first(self.client.dispatcher.updates_queue, gate)

    def uninstall(self) -> None:
        # Stopping the client already cleared its handlers; removing one that is gone would
        # fail in kurigram's background task.
        registered: Any = self.client.dispatcher.groups.get(self.group, ())
        for handler in self._handlers:
            if handler in registered:
                self.client.remove_handler(handler, self.group)
        self._handlers = []

    async def _on_message(self, _client: Client, message: types.Message) -> None:
        await self._handle("message", message, message_event, _sender_id(message))

    async def _on_edited(self, _client: Client, message: types.Message) -> None:
        # An edit changes nothing the bot already acted on (the photo was taken, the command
        # ran), and treating it as new input would run a command twice.
        self.dropped += 1
        logger.debug("edited message {} ignored", message.id)

    async def _on_callback(self, _client: Client, query: types.CallbackQuery) -> None:
        await self._handle("callback", query, callback_event, _sender_id(query))

    async def _on_pre_checkout(self, _client: Client, query: types.PreCheckoutQuery) -> None:
        await self._handle("pre-checkout", query, pre_checkout_event, _sender_id(query))

    async def _on_raw(
        self, _client: Client, update: Any, users: dict[int, Any], chats: dict[int, Any]
    ) -> None:
        if not isinstance(update, _raw.types.UpdateBotStarsSubscription):
            return  # nothing else kurigram leaves unparsed concerns the bot
        await self._handle(
            "subscription update",
            update,
            lambda u: subscription_event(u, users),
            getattr(update, "user_id", None),
        )

    async def _handle(
        self, what: str, update: Any, translate: Callable[[Any], Translated], user_id: int | None
    ) -> None:
        try:
            event = translate(update)
            if event is None:
                self.dropped += 1
                logger.debug("{} update dropped (user {})", what, user_id)
                return
            await self.dispatch(event)
            self.dispatched += 1
        except Exception:  # noqa: BLE001 - one bad update must not stop the others
            # Logged here, with the user, instead of kurigram's logger, which has neither.
            self.failed += 1
            logger.bind(user_id=user_id).exception(
                "handling a {} from user {} failed", what, user_id
            )


def _sender_id(update: Any) -> int | None:
    user = getattr(update, "from_user", None)
    user_id = getattr(user, "id", None)
    return user_id if isinstance(user_id, int) else None
