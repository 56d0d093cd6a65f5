"""Redaction and shape of log lines, in readable and JSON modes, for loguru and stdlib logging."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from loguru import logger

from flick.errors import ConfigError
from flick.ops.logging import redact, register_secret
from flick.settings import Settings

LogCapture = Callable[..., io.StringIO]

BOT_TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
SENTRY_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

# (settings field, value given to Settings, the secret text that must never be printed)
SECRETS: list[tuple[str, str, str]] = [
    ("bot_token", BOT_TOKEN, BOT_TOKEN),
    ("api_hash", "c0ffee5eed0123456789abcdefabcdef", "c0ffee5eed0123456789abcdefabcdef"),
    (
        "openai_api_key",
        "sk-proj-Zq8v3LxN0pW7tR2yK5mB9cD4fG6hJ1",
        "sk-proj-Zq8v3LxN0pW7tR2yK5mB9cD4fG6hJ1",
    ),
    (
        "replicate_api_token",
        "r8_Pq7Wn2Lk9Jm4Hx6Vb3Tz8Rc5Yd1Fs0Ga",
        "r8_Pq7Wn2Lk9Jm4Hx6Vb3Tz8Rc5Yd1Fs0Ga",
    ),
    ("s3_secret_key", "wJalrXUtnFEMI-K7MDENG-bPxRfiCY", "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"),
    ("s3_access_key", "flickaccess42", "flickaccess42"),
    ("database_url", "postgresql://flick:Pa55-w0rd-Tr0ut@db:5432/flick", "Pa55-w0rd-Tr0ut"),
    ("sentry_dsn", f"https://{SENTRY_KEY}@o123.ingest.sentry.io/4567", SENTRY_KEY),
]
IDS = [field for field, _, _ in SECRETS]


def make_settings(**values: Any) -> Settings:
    """Settings from explicit values only: a developer's .env must not leak into the tests."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def log_everywhere(secret: str) -> None:
    """The secret in a message, in a bound extra and in an exception's text."""
    logger.bind(request=f"token={secret}").info("calling with {}", secret)
    try:
        raise RuntimeError(f"server said no to {secret}")
    except RuntimeError:
        logger.exception("request failed")


@pytest.mark.parametrize("log_json", [False, True], ids=["readable", "json"])
@pytest.mark.parametrize(("field", "value", "secret"), SECRETS, ids=IDS)
def test_settings_secret_never_printed(
    capture_logs: LogCapture, field: str, value: str, secret: str, log_json: bool
) -> None:
    out = capture_logs(log_json=log_json, **{field: value})
    log_everywhere(secret)
    text = out.getvalue()
    assert secret not in text
    assert "***" in text
    assert "RuntimeError" in text  # the exception itself is still there
    if log_json:
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines[0]["extra"]["request"] == "token=***"
        assert lines[0]["message"] == "calling with ***"
        assert "server said no to ***" in lines[1]["exception"]
    else:
        assert "calling with ***" in text
        assert "server said no to ***" in text


def test_the_whole_database_url_is_safe(capture_logs: LogCapture) -> None:
    url = "postgresql://flick:Pa55-w0rd-Tr0ut@db:5432/flick"
    out = capture_logs(database_url=url)
    logger.info("connecting to {}", url)
    assert "postgresql://flick:***@db:5432/flick" in out.getvalue()


def test_percent_encoded_password(capture_logs: LogCapture) -> None:
    out = capture_logs(database_url="postgresql://flick:p%40ss%2Fw0rd@db/flick")
    logger.info("decoded p@ss/w0rd and encoded p%40ss%2Fw0rd")
    text = out.getvalue()
    assert "p@ss/w0rd" not in text
    assert "p%40ss%2Fw0rd" not in text


@pytest.mark.parametrize("log_json", [False, True], ids=["readable", "json"])
def test_secret_registered_later(capture_logs: LogCapture, log_json: bool) -> None:
    out = capture_logs(log_json=log_json)
    generated = "seaweed-Secret-9f8e7d6c"
    register_secret(generated)
    log_everywhere(generated)
    assert generated not in out.getvalue()
    assert "***" in out.getvalue()


@pytest.mark.parametrize("log_json", [False, True], ids=["readable", "json"])
def test_presigned_url_query_is_redacted(capture_logs: LogCapture, log_json: bool) -> None:
    out = capture_logs(log_json=log_json)
    url = (
        "https://files.example.com/telegram-flick/videos/42/1700000000_hug.mp4"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20250101%2Fus-east-1"
        "%2Fs3%2Faws4_request&X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=9b2f0c1d4e5a6b7c8d9e0f1a2b3c4d5e"
    )
    logger.bind(link=url).info("sent link {} to the user", url)
    text = out.getvalue()
    assert "X-Amz-Signature" not in text
    assert "X-Amz-Credential" not in text
    assert "AKIAEXAMPLE" not in text
    assert "1700000000_hug.mp4?<redacted>" in text
    assert "to the user" in text  # only the query went, not the rest of the line


def test_unknown_bot_token_shape_is_redacted(capture_logs: LogCapture) -> None:
    out = capture_logs()  # no token in Settings: the shape alone is enough
    other = "5551234567:AAFxYzAbCdEfGhIjKlMnOpQrStUvWxYz012"
    logger.info("GET https://api.telegram.org/bot{}/getMe", other)
    assert other not in out.getvalue()
    assert "/bot***/getMe" in out.getvalue()


@pytest.mark.parametrize("log_json", [False, True], ids=["readable", "json"])
def test_stdlib_logging_goes_through_redaction(capture_logs: LogCapture, log_json: bool) -> None:
    out = capture_logs(log_json=log_json, bot_token=BOT_TOKEN)
    library = logging.getLogger("pyrogram.session.session")
    library.info("connected (INFO from libraries is dropped)")
    library.warning("retrying with %s", BOT_TOKEN)
    try:
        raise ConnectionError(f"lost {BOT_TOKEN}")
    except ConnectionError:
        library.exception("session crashed")
    text = out.getvalue()
    assert BOT_TOKEN not in text
    assert "retrying with ***" in text
    assert "lost ***" in text
    assert "INFO from libraries" not in text
    assert "pyrogram.session.session" in text  # the library's name, not the bridge's


def test_readable_lines_show_bound_ids(capture_logs: LogCapture) -> None:
    out = capture_logs()
    logger.bind(user_id=12345, generation_id=678).info("video sent")
    logger.info("no ids here")
    first, second = out.getvalue().splitlines()
    assert "user_id=12345 generation_id=678 video sent" in first
    assert "user_id" not in second


def test_json_lines_carry_level_and_extras(capture_logs: LogCapture) -> None:
    out = capture_logs(log_json=True)
    logger.bind(user_id=12345).warning("low balance")
    line: dict[str, Any] = json.loads(out.getvalue())
    assert line["level"] == "WARNING"
    assert line["message"] == "low balance"
    assert line["extra"] == {"user_id": 12345}
    assert "exception" not in line


def test_level_filters(capture_logs: LogCapture) -> None:
    out = capture_logs(log_level="warning")
    logger.info("hidden")
    logger.warning("shown")
    assert "hidden" not in out.getvalue()
    assert "shown" in out.getvalue()


def test_setting_up_twice_does_not_duplicate_lines(capture_logs: LogCapture) -> None:
    capture_logs()
    out = capture_logs()
    logger.info("once")
    logging.getLogger("asyncpg").warning("once from stdlib")
    assert out.getvalue().count("once") == 2


def test_unknown_level_is_a_config_error(capture_logs: LogCapture) -> None:
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        capture_logs(log_level="LOUD")


def test_redact_leaves_ordinary_text_alone(capture_logs: LogCapture) -> None:
    capture_logs()
    register_secret(make_settings(api_hash="abcdef0123456789").api_hash)
    text = "user 42 chose style hug at 2025-01-01 10:00:00; https://example.com/a?b=c"
    assert redact(text) == text
