"""Sentry: nothing at all without a DSN; with one, events are scrubbed and tagged.

The DSN points nowhere: a recording transport (sentry-sdk's own extension point) takes the events
instead of the network.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from loguru import logger
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from flick.errors import FinalError
from flick.ops.logging import reset_logging
from flick.ops.sentry import capture_generation_failure, close_sentry, setup_sentry
from flick.settings import Settings

BOT_TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
OPENAI_KEY = "sk-proj-Zq8v3LxN0pW7tR2yK5mB9cD4fG6hJ1"
DSN = "https://0f1e2d3c4b5a69788796a5b4c3d2e1f0@o123.ingest.sentry.invalid/4567"


def make_settings(**values: Any) -> Settings:
    """Settings from explicit values only: a developer's .env must not leak into the tests."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class Recorder(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(dict(event))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    transport = Recorder()
    settings = make_settings(sentry_dsn=DSN, bot_token=BOT_TOKEN, openai_api_key=OPENAI_KEY)
    assert setup_sentry(settings, transport=transport)
    yield transport
    close_sentry()
    reset_logging()


def test_off_without_dsn() -> None:
    close_sentry()
    assert setup_sentry(make_settings()) is False
    assert sentry_sdk.get_client().is_active() is False
    assert capture_generation_failure(1, 2, RuntimeError("x")) is None


def test_empty_dsn_is_off() -> None:
    close_sentry()
    assert setup_sentry(make_settings(sentry_dsn="")) is False
    assert sentry_sdk.get_client().is_active() is False


def test_generation_failure_is_tagged_and_scrubbed(recorder: Recorder) -> None:
    try:
        raise FinalError(f"moderation blocked; key {OPENAI_KEY}", kind="moderation")
    except FinalError as exc:
        event_id = capture_generation_failure(generation_id=77, user_id=12345, exc=exc)
    assert event_id is not None
    (event,) = recorder.events
    assert event["tags"]["user_id"] == "12345"
    assert event["tags"]["generation_id"] == "77"
    assert event["tags"]["error_class"] == "moderation"
    text = json.dumps(event, default=str)
    assert OPENAI_KEY not in text
    assert "moderation blocked; key ***" in text


def test_error_log_lines_become_scrubbed_events(recorder: Recorder) -> None:
    try:
        raise RuntimeError(f"Telegram rejected {BOT_TOKEN}")
    except RuntimeError:
        logger.bind(user_id=5, generation_id=9).exception("actor crashed")
    events = [e for e in recorder.events if "actor crashed" in json.dumps(e, default=str)]
    assert len(events) == 1
    event = events[0]
    assert event["tags"]["user_id"] == "5"
    assert event["tags"]["generation_id"] == "9"
    assert BOT_TOKEN not in json.dumps(event, default=str)


def test_close_turns_it_off(recorder: Recorder) -> None:
    assert sentry_sdk.get_client().is_active()
    close_sentry()
    assert not sentry_sdk.get_client().is_active()
