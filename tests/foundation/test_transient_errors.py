"""What counts as a failure of ours worth retrying (`flick.errors.is_transient`)."""

from __future__ import annotations

import asyncpg

from flick.errors import BudgetExceededError, FinalError, ServiceError, TransientError, is_transient


def raised_while_handling(cause: Exception, error: Exception) -> Exception:
    try:
        try:
            raise cause
        except type(cause):
            raise error  # noqa: B904 - the implicit context is what this test is about
    except type(error) as exc:
        return exc


def test_connection_failures_are_transient() -> None:
    for exc in (
        ConnectionResetError(104, "Connection reset by peer"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        TimeoutError(),
        TransientError("503", kind="server_error"),
        ServiceError("cannot reach S3", setting="S3_ENDPOINT"),
    ):
        assert is_transient(exc), exc


def test_bugs_and_decisions_are_not() -> None:
    for exc in (
        ValueError("bad data"),
        KeyError("x"),
        FinalError("blocked by moderation", kind="moderation"),
        BudgetExceededError("gave up after 60 s"),
        ServiceError("wrong credentials", setting="S3_ACCESS_KEY"),
        asyncpg.UniqueViolationError("duplicate key"),
    ):
        assert not is_transient(exc), exc


def test_an_interface_error_after_a_dropped_connection_is_transient() -> None:
    """The bug: asyncpg's "cannot call Transaction.__aexit__(): the underlying connection is
    closed", raised while tidying up after a reset, crashed the actor (an apology, a lost update)
    instead of being retried like the reset that caused it."""
    exc = raised_while_handling(
        ConnectionResetError(104, "Connection reset by peer"),
        asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the connection is closed"),
    )
    assert is_transient(exc)
    assert not is_transient(asyncpg.InterfaceError("another operation is in progress"))


def test_a_budget_spent_on_a_transient_error_is_final() -> None:
    exc = raised_while_handling(TransientError("429"), BudgetExceededError("gave up"))
    assert not is_transient(exc)
