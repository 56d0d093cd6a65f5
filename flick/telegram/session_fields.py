"""kurigram's session accessors (`dc_id`, `port`, `user_id`, …) over one `_field(name, value)`:
called without a value they read, with one (None included) they write, as kurigram's own
storages do. Shared by the database store and the borrowed session of a one-off command; each
says in `_field` where a field lives. And the merge of an update state both of Flick's
session storages keep in memory (`merged_state`)."""

from __future__ import annotations

from typing import Any, Final

from pyrogram.storage import UpdateState

UNSET: Final = object  # kurigram's own sentinel: an accessor called without a value reads


def merged_state(new: UpdateState, old: UpdateState | None) -> UpdateState:
    """kurigram's write of an update state: a field given as None keeps its known value (the
    COALESCE of its SQLite statement)."""
    if old is None:
        return new
    return UpdateState(
        new.id,
        old.pts if new.pts is None else new.pts,
        old.qts if new.qts is None else new.qts,
        old.date if new.date is None else new.date,
        old.seq if new.seq is None else new.seq,
    )


class SessionFields:
    async def _field(self, field: str, value: Any) -> Any:
        raise NotImplementedError

    async def dc_id(self, value: Any = UNSET) -> Any:
        return await self._field("dc_id", value)

    async def server_address(self, value: Any = UNSET) -> Any:
        return await self._field("server_address", value)

    async def port(self, value: Any = UNSET) -> Any:
        return await self._field("port", value)

    async def api_id(self, value: Any = UNSET) -> Any:
        return await self._field("api_id", value)

    async def test_mode(self, value: Any = UNSET) -> Any:
        return await self._field("test_mode", value)

    async def date(self, value: Any = UNSET) -> Any:
        return await self._field("date", value)

    async def user_id(self, value: Any = UNSET) -> Any:
        return await self._field("user_id", value)

    async def is_bot(self, value: Any = UNSET) -> Any:
        return await self._field("is_bot", value)
