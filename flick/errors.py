"""The exception root. Transient errors are retried; final ones are told to the user, refunded."""

from __future__ import annotations

import errno


class FlickError(Exception):
    """Root of every error Flick raises on purpose."""


class ConfigError(FlickError):
    """Settings that cannot work. Holds every problem at once: (variable, problem, how to fix)."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = ["Flick cannot start: fix these settings (environment or .env):"]
        for name, problem, hint in self.problems:
            line = f"  - {name}: {problem}"
            if hint:
                line += f" — {hint}"
            lines.append(line)
        return "\n".join(lines)


class ServiceError(FlickError):
    """A service Flick needs (database, storage, Telegram) cannot be used. One line, one setting."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        self.setting = setting
        text = message if setting is None else f"{message} (check {setting})"
        super().__init__(text)


class ProviderError(FlickError):
    """An AI provider did not give us what we asked for."""

    #: A short machine name stored on the generation row (`error_class`).
    kind: str = "provider_error"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class TransientError(ProviderError):
    """Worth retrying: timeouts, connection errors, 429, 5xx. May say how long to wait."""

    kind = "transient"

    def __init__(
        self, message: str, *, kind: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, kind=kind)
        self.retry_after = retry_after


class FinalError(ProviderError):
    """Not worth retrying: refund the credit and tell the user what to change."""

    kind = "final"

    #: Which user-facing explanation fits (a message catalog key suffix).
    user_reason: str = "generic"

    def __init__(self, message: str, *, kind: str | None = None, user_reason: str = "generic"):
        super().__init__(message, kind=kind)
        self.user_reason = user_reason


class BudgetExceededError(FinalError):
    """A step ran out of its time budget while retrying."""

    kind = "timeout"


class TelegramRefused(FlickError):  # noqa: N818 - a condition, like RecipientGone
    """Telegram answered a request with an error a retry will not change (an invoice refused,
    MESSAGE_TOO_LONG, a re-sent file that is gone). The user gets a plain-words reply."""

    def __init__(self, error_id: str, what: str) -> None:
        self.error_id = error_id
        super().__init__(f"Telegram refused {what}: {error_id}")


def is_transient(exc: BaseException) -> bool:
    """Is this a failure of ours or of the network that a later try may not meet?

    The database or S3 unreachable (a connection refused, reset or dropped, a server shutting
    down or not accepting connections yet), a Telegram timeout: worth retrying. Anything else —
    a bug, bad data — is not, and a retry would only repeat it.
    """
    if isinstance(exc, FinalError):
        return False  # decided: e.g. a budget spent retrying a transient one
    if _transient_itself(exc):
        return True
    # A client tidying up after a dropped connection raises its own error ("cannot call
    # Transaction.__aexit__(): the underlying connection is closed"): the cause is what counts.
    seen = 0
    cause = exc.__cause__ or exc.__context__
    while cause is not None and seen < 5:
        if _transient_itself(cause):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.EAGAIN,
    }
)


def _transient_itself(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, ServiceError):
        return exc.setting in ("S3_ENDPOINT", "DATABASE_URL")
    if isinstance(exc, OSError):
        # The network's errors only: an image library's "cannot identify image file" or a
        # missing file are OSErrors too, and retrying them would only repeat them.
        return exc.errno in _NETWORK_ERRNOS
    # Imported here: the exception root must not make every importer load these clients.
    import aiohttp
    import asyncpg

    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.TooManyConnectionsError
        | asyncpg.exceptions.OperatorInterventionError
        | aiohttp.ClientConnectionError,
    )
