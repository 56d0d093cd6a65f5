"""What the offline Telegram delivered, kept so that `updates.getDifference` can deliver it again:
the catch-up (kurigram's `recover_gaps`) of a bot that comes back, or of the standby gateway
that takes over, from the pts its session saved.

Only what was pushed to the bot (`OfflineTelegram.push`) is kept, as Telegram keeps a bot's
incoming updates; the bot's own sends are not redelivered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from flick.testing.telegram.wire import raw


@dataclass
class Redelivery:
    updates: list[Any] = field(default_factory=list)  # raw updates that carry a pts, in order
    users: dict[int, Any] = field(default_factory=dict)
    chats: dict[int, Any] = field(default_factory=dict)
    asked: list[int] = field(default_factory=list)  # the pts of each getDifference

    def record(self, updates: Any) -> None:
        """Keep an `Updates` the bot was sent."""
        self.updates.extend(u for u in updates.updates if getattr(u, "pts", None) is not None)
        self.users.update({u.id: u for u in updates.users})
        self.chats.update({c.id: c for c in updates.chats})

    def difference(self, request: Any) -> Any:
        """`updates.getDifference`: everything after `request.pts`, in one Difference."""
        self.asked.append(request.pts)
        missed = [u for u in self.updates if u.pts > request.pts]
        now = int(time.time())
        if not missed:
            return raw.types.updates.DifferenceEmpty(date=now, seq=0)
        state = raw.types.updates.State(
            pts=max(u.pts for u in missed), qts=0, date=now, seq=0, unread_count=0
        )
        return raw.types.updates.Difference(
            new_messages=[u.message for u in missed if isinstance(u, raw.types.UpdateNewMessage)],
            new_encrypted_messages=[],
            other_updates=[u for u in missed if not isinstance(u, raw.types.UpdateNewMessage)],
            chats=list(self.chats.values()),
            users=list(self.users.values()),
            state=state,
        )
