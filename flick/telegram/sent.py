"""Sending a text and keeping only its message id: kurigram's `send_message` without the parse.

For a message with an inline keyboard Telegram answers with the whole message (an `Updates`),
and `Client.send_message` turns it into a `types.Message`: users, chats, entities, the markup,
a reply lookup. The outbox needs the id alone; the parse was 6 % of Flick's CPU at saturation
(BENCHMARKS.md, Round 7). The request is the one `send_message` makes for Flick's arguments (the
client's parse mode, no preview, no reply), through `Client.invoke`, so errors, flood waits and
the peer cache are kurigram's as before.

kurigram's parse also left the message in `Client.message_cache`, where a button press under it
finds its message: on a miss kurigram asks Telegram for it (`get_messages`, one request per
press). So a keyboard message sent to a user goes into that cache here, as the Message kurigram
itself builds for a plain one: its id and chat, all Flick reads of a pressed button's message.
"""

from __future__ import annotations

from typing import Any

import pyrogram
from pyrogram import Client, enums, types, utils

# kurigram's generated raw types export nothing to a type checker (as in adapter.py).
raw: Any = pyrogram.raw

#: The updates that carry a sent message, as `pyrogram.utils.parse_messages` reads them.
_NEW = (raw.types.UpdateNewMessage, raw.types.UpdateNewChannelMessage)


async def send_text(
    client: Client, chat_id: int, text: str, markup: types.InlineKeyboardMarkup | None
) -> int | None:
    """Send `text` (with `markup`) without a link preview; the sent message's id (None: Telegram
    answered with no message)."""
    parsed: dict[str, Any] = await utils.parse_text_entities(client, text, None, None)
    peer = await client.resolve_peer(chat_id)
    rpc = raw.functions.messages.SendMessage(
        peer=peer,
        no_webpage=True,
        random_id=client.rnd_id(),
        reply_markup=await markup.write(client) if markup else None,
        message=parsed["message"],
        entities=parsed["entities"],
    )
    message_id = sent_id(await client.invoke(rpc))
    if message_id is not None and markup is not None and isinstance(peer, raw.types.InputPeerUser):
        chat = types.Chat(id=peer.user_id, type=enums.ChatType.PRIVATE, client=client)
        sent = types.Message(id=message_id, chat=chat, reply_markup=markup, client=client)
        await client.message_cache.set((peer.user_id, message_id), sent)
    return message_id


def sent_id(answer: Any) -> int | None:
    if isinstance(answer, raw.types.UpdateShortSentMessage):
        return int(answer.id)
    for update in getattr(answer, "updates", ()):
        if isinstance(update, _NEW) and not isinstance(update.message, raw.types.MessageEmpty):
            return int(update.message.id)
    return None
