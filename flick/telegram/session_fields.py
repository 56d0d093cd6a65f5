"""kurigram's session accessors (`dc_id`, `port`, `user_id`, …) over one `_field(name, value)`:
called without a value they read, with one (None included) they write, as kurigram's own
storages do. Shared by the database store and the borrowed session of a one-off command; each
says in `_field` where a field lives."""

from __future__ import annotations

from typing import Any, Final

UNSET: Final = object  # kurigram's own sentinel: an accessor called without a value reads


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
