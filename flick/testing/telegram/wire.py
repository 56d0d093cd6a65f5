"""What the wire does to MTProto objects, for the offline Telegram."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from io import BytesIO
from typing import Any, TypeAlias

import pyrogram
from pyrogram import utils
from pyrogram.errors.rpc_error import RPCError
from pyrogram.raw.core import TLObject

# kurigram's generated `raw` package re-exports its thousands of TL types with `import *`, which
# strict mypy does not count as exports; the offline Telegram reaches them through this one
# Any-typed name instead of an ignore on every line.
raw: Any = pyrogram.raw
#: A raw.types.User (for annotations: `raw` above is a value, not a type).
RawUser: TypeAlias = Any


def roundtrip(obj: Any) -> Any:
    """Serialize and read back, as the wire does: absent vectors become [], types are checked."""
    if isinstance(obj, TLObject):
        return TLObject.read(BytesIO(obj.write()))
    return obj


def rpc_error(query: Any, message: str, code: int = 400) -> RPCError:
    """The exception kurigram raises for Telegram's error `message` (e.g. "USER_IS_BLOCKED").

    Built by kurigram's own error table, so it is the same class production code catches.
    """
    try:
        RPCError.raise_it(raw.types.RpcError(error_code=code, error_message=message), type(query))
    except RPCError as exc:
        return exc
    raise AssertionError("RPCError.raise_it did not raise")  # pragma: no cover


@dataclass
class Exchange:
    """One request the bot made and what it got back (a result or an error)."""

    request: Any
    chat_id: int | None
    at: float
    result: Any = None
    error: BaseException | None = None
    # False: sent as invokeWithoutUpdates, the connection asks for no updates to be pushed.
    wants_updates: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Fault:
    request_type: type[Any]
    error: BaseException | type[BaseException]
    chat_id: int | None = None

    def matches(self, request: Any, chat_id: int | None) -> bool:
        return isinstance(request, self.request_type) and self.chat_id in (None, chat_id)

    def make(self) -> BaseException:
        return self.error() if isinstance(self.error, type) else self.error


@dataclass
class SentMedia:
    chat_id: int
    kind: str  # "video", "document", "invoice"
    message_id: int
    caption: str
    data: bytes | None = None
    uploaded: bool = False
    request: Any = None
    thumb: bytes | None = None  # the thumbnail uploaded with it (JPEG, as Telegram asks)


def chat_of(request: Any) -> int | None:
    """The chat a request is about, as kurigram numbers chats (users > 0, groups < 0)."""
    for attr in ("peer", "user_id"):
        peer = getattr(request, attr, None)
        if peer is not None and not isinstance(peer, int):
            try:
                return utils.get_peer_id(peer)
            except ValueError:
                return None
    return None


class OfflineSession:
    """Stands in for a kurigram Session (main or media DC): same calls, answered offline."""

    def __init__(self, server: Any, dc_id: int, is_media: bool) -> None:
        self.server = server
        self.dc_id = dc_id
        self.is_media = is_media
        self.auth_key = bytes(256)
        self.server_address, self.port = "offline", 0

    async def invoke(self, query: Any, *_args: Any, **_kwargs: Any) -> Any:
        await asyncio.sleep(0)  # a round trip always yields to the loop
        return await self.server.invoke(query)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def restart(self) -> None:
        pass
