"""Crash incidents per user: exponential backoff between restarts, one apology per incident.

An incident starts with a crash and ends once the restarted actor handles a message. While it
lasts, each further crash doubles the wait before the next restart (up to a cap), and the user
hears one apology, not one per crash.
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_DELAY = 0.05
MAX_DELAY = 30.0


@dataclass
class Incident:
    crashes: int = 0
    apologised: bool = False


class Incidents:
    def __init__(self, first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._open: dict[int, Incident] = {}

    def crashed(self, user_id: int, recovered: bool) -> tuple[float, bool]:
        """A crash: (seconds to wait before the restart, whether to apologise now).

        `recovered`: the crashed actor had handled a message since its start, which closes the
        incident before this one.
        """
        incident = self._open.get(user_id)
        if incident is None or recovered:
            incident = self._open[user_id] = Incident()
        incident.crashes += 1
        delay = min(self.max_delay, self.first_delay * 2 ** (incident.crashes - 1))
        apologise = not incident.apologised
        incident.apologised = True
        return delay, apologise

    def close(self, user_id: int) -> None:
        self._open.pop(user_id, None)

    def __contains__(self, user_id: int) -> bool:
        return user_id in self._open
