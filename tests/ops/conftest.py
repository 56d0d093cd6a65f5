"""Fixtures for the ops tests: Settings without any .env file, and logging captured to a string."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flick.ops.logging import reset_logging, setup_logging
from flick.settings import Settings

LogCapture = Callable[..., io.StringIO]


@pytest.fixture
def capture_logs() -> Iterator[LogCapture]:
    """`capture_logs(log_json=..., **settings)` sets up logging into a StringIO and returns it."""

    def start(**values: Any) -> io.StringIO:
        stream = io.StringIO()
        # _env_file=None: a developer's .env must not leak into the tests.
        setup_logging(Settings(_env_file=None, **values), sink=stream)  # type: ignore[call-arg]
        return stream

    yield start
    reset_logging()
