"""The bot's stored session, borrowed by a one-off command (`flick doctor`, `flick payments
reconcile`) while a gateway may be serving with it, on this host or another.

It reads what is stored (the auth key, so no new sign-in; the known peers) and writes nothing
back: the update state belongs to the gateway that hands updates to the engine, and a pts saved
by a command that handled no update would make the next gateway skip those updates for good.
Whatever kurigram writes during the command (the state it fetched at start, peers from answers,
a sign-in when nothing was stored) stays in memory and goes with the process. Nothing is written
to a session file either: an open write transaction would lock the gateway's own saves out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyrogram.storage import Storage, UpdateState
from pyrogram.storage.sqlite_storage import get_input_peer

from flick.telegram.session_fields import UNSET, SessionFields


class GuestSession(SessionFields, Storage):
    def __init__(self, stored: Storage) -> None:
        self.name = getattr(stored, "name", "guest")
        self._stored: Any = stored  # kurigram leaves Storage unannotated
        self._own: dict[str, Any] = {}  # session fields kurigram set during this command
        self._states: dict[int, UpdateState] = {}
        self._peers: dict[int, tuple[int, str]] = {}

    @property
    def signed_in(self) -> bool:
        """Whether this command signed in afresh (nothing usable was stored): a session of its
        own at Telegram, to be logged out when done."""
        return self._own.get("user_id") is not None

    async def open(self) -> None:
        await self._stored.open()

    async def save(self) -> None:
        pass  # the gateway's to save

    async def close(self) -> None:
        await self._stored.close()

    async def delete(self) -> None:
        pass  # kurigram's log_out() deletes the session: never the gateway's

    async def update_peers(self, peers: Iterable[tuple[int, int, str, str | None]]) -> None:
        for peer_id, access_hash, kind, _phone in peers:
            self._peers[peer_id] = (access_hash, kind)

    async def update_usernames(self, usernames: Iterable[tuple[int, list[str | None]]]) -> None:
        pass

    async def get_update_states(self, ids: int | Iterable[int] | None = None) -> list[UpdateState]:
        wanted = None if ids is None else {ids} if isinstance(ids, int) else set(ids)
        stored: list[UpdateState] = await self._stored.get_update_states(ids)
        mine = {i: s for i, s in self._states.items() if wanted is None or i in wanted}
        return [s for s in stored if s.id not in mine] + list(mine.values())

    async def set_update_state(self, update_state: UpdateState | Iterable[UpdateState]) -> None:
        states = [update_state] if isinstance(update_state, UpdateState) else update_state
        self._states.update((s.id, s) for s in states)

    async def delete_update_state(self, state_id: int | Iterable[int]) -> None:
        for i in (state_id,) if isinstance(state_id, int) else tuple(state_id):
            self._states.pop(i, None)

    async def get_peer_by_id(self, peer_id: int) -> Any:
        known = self._peers.get(peer_id)
        if known is not None:
            return get_input_peer(peer_id, *known)
        return await self._stored.get_peer_by_id(peer_id)

    async def get_peer_by_username(self, username: str) -> Any:
        return await self._stored.get_peer_by_username(username)

    async def get_peer_by_phone_number(self, phone_number: str) -> Any:
        return await self._stored.get_peer_by_phone_number(phone_number)

    async def _field(self, field: str, value: Any) -> Any:
        if value is UNSET:
            if field in self._own:
                return self._own[field]
            return await getattr(self._stored, field)()
        self._own[field] = value
        return None

    # kurigram's accessors besides SessionFields' (flick.telegram.session_fields).
    async def auth_key(self, value: Any = UNSET) -> Any:
        return await self._field("auth_key", value)

    async def version(self, value: Any = UNSET) -> Any:
        return await self._field("version", value)

    def __repr__(self) -> str:  # never the key
        return f"GuestSession({self.name!r})"
