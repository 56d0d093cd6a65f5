"""The production client's login against the offline Telegram, and packets kurigram cannot read.

`attach_offline` swaps only the network part of `Client.connect` (opening the session file and
a TCP session) for the offline Telegram: `client.start()` then runs as in production, so
`sign_in_bot` sends `auth.importBotAuthorization`, `start` asks `updates.getState`, and a
scripted `tg.fail_next(...)` comes back through kurigram's own invoke path as its real error.

`feed_unknown_constructor` hands kurigram's real `Session.handle_packet` an encrypted packet
whose body starts with a constructor id no class has, as a newer Telegram layer would send.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from hashlib import sha1, sha256
from types import SimpleNamespace
from typing import Any

from pyrogram import Client
from pyrogram.crypto import aes
from pyrogram.crypto.mtproto import kdf
from pyrogram.session import Session

from flick.testing.telegram.wire import OfflineSession

#: A constructor id no kurigram layer knows.
UNKNOWN_CONSTRUCTOR = 0x0BADC0DE


def attach_offline(client: Client, server: Any, *, authorized: bool | None) -> None:
    """`client.start()` logs in through `server`: with a saved session (`authorized`), with
    the bot token (`auth.importBotAuthorization`), or (None) with whatever the client's
    storage holds: a stored session is used as it is (nothing written), an empty one signs in
    with the token."""
    storage: Any = client.storage  # kurigram leaves it unannotated

    async def connect() -> bool:
        await storage.open()
        stored = await storage.user_id() is not None and await storage.auth_key() is not None
        if authorized is None and stored:
            client.session = OfflineSession(server, server.dc_id, False)  # type: ignore[assignment]
            client.is_connected = True
            return True
        await storage.dc_id(server.dc_id)
        await storage.api_id(client.api_id)
        await storage.test_mode(False)
        await storage.auth_key(bytes(256))
        await storage.date(0)
        await storage.user_id(server.bot.id if authorized else None)
        await storage.is_bot(True if authorized else None)
        client.session = OfflineSession(server, server.dc_id, False)  # type: ignore[assignment]
        client.is_connected = True
        return bool(authorized)

    client.connect = connect  # type: ignore[method-assign]


def unknown_constructor_packet(auth_key: bytes, session_id: bytes) -> bytes:
    """An MTProto 2.0 packet from the server, well encrypted, with an unknown body."""
    body = UNKNOWN_CONSTRUCTOR.to_bytes(4, "little") + bytes(12)
    msg_id = (int(time.time()) << 32) | 1  # a server's message ids are odd
    inner = (
        bytes(8)  # salt
        + session_id
        + msg_id.to_bytes(8, "little")
        + (1).to_bytes(4, "little")  # seq_no
        + len(body).to_bytes(4, "little")
        + body
    )
    plain = inner + os.urandom(12 + (-(len(inner) + 12) % 16))
    msg_key = sha256(auth_key[96 : 96 + 32] + plain).digest()[8:24]
    aes_key, aes_iv = kdf(auth_key, msg_key, False)  # False: from the server
    return sha1(auth_key).digest()[-8:] + msg_key + aes.ige256_encrypt(plain, aes_key, aes_iv)


async def feed_unknown_constructor(client: Client) -> None:
    """Let kurigram's own session read a packet of a newer layer: it drops it and restarts
    (here, a restart that does nothing), as it does with real Telegram."""
    auth_key = os.urandom(256)
    session = Session(client, 2, "offline", 0, auth_key, False)

    async def restart() -> None:
        pass

    session.restart = restart  # type: ignore[method-assign]
    session.connection = SimpleNamespace(  # type: ignore[assignment]
        protocol=SimpleNamespace(crypto_executor=None)  # the loop's default executor
    )
    handle: Callable[[bytes], Awaitable[None]] = session.handle_packet
    await handle(unknown_constructor_packet(auth_key, session.session_id))
