"""Error reporting to Sentry, only when SENTRY_DSN is set; otherwise nothing leaves the machine.

Events pass through the same redaction as log lines before they are sent. Errors reach Sentry two
ways: loguru lines at ERROR and above (an actor's crash, logged with its trace) and
`capture_generation_failure()` for a generation that failed and was refunded.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, cast

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.loguru import LoguruIntegration
from sentry_sdk.transport import Transport

from flick.ops.logging import ID_KEYS, redact, register_settings_secrets

if TYPE_CHECKING:
    from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

    from flick.settings import Settings

_INFO = 20
_ERROR = 40


def setup_sentry(settings: Settings, *, transport: Transport | None = None) -> bool:
    """Start Sentry when settings.sentry_dsn is set; return whether it was started.

    `transport` replaces the HTTP transport (tests use one that records envelopes).
    """
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn is not None else ""
    if not dsn:
        return False
    register_settings_secrets(settings)
    sentry_sdk.init(
        dsn=dsn,
        release=_release(),
        before_send=_before_send,
        before_breadcrumb=_before_breadcrumb,
        # send_default_pii is left unset: its default sends no PII and keeps the SDK's own
        # EventScrubber (which blanks fields named password, token, secret…) working.
        # Frame locals hold users' photos, prompts and settings; the trace is enough to debug.
        include_local_variables=False,
        # No silent patching of aiohttp, asyncpg, openai…: what we send is what is listed here.
        auto_enabling_integrations=False,
        integrations=[
            # Flick's errors and, through the stdlib hook, the libraries' ones arrive via loguru.
            LoguruIntegration(level=_INFO, event_level=_ERROR, sentry_logs_level=None),
            # So the stdlib integration must not report them a second time.
            LoggingIntegration(level=None, event_level=None),
        ],
        transport=transport,
    )
    return True


def close_sentry(timeout: float = 2.0) -> None:
    """Flush pending events and detach the client (at shutdown, and between tests)."""
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=timeout)
    sentry_sdk.get_global_scope().set_client(None)


def capture_generation_failure(
    generation_id: int | str, user_id: int, exc: BaseException
) -> str | None:
    """Report a failed generation with its ids as tags; returns the event id (None when off)."""
    if not sentry_sdk.get_client().is_active():
        return None
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("user_id", str(user_id))
        scope.set_tag("generation_id", str(generation_id))
        # ProviderError.kind ("transient", "moderation", …) groups failures usefully in Sentry.
        scope.set_tag("error_class", str(getattr(exc, "kind", type(exc).__name__)))
        return sentry_sdk.capture_exception(exc)


def scrub(value: Any) -> Any:
    """A copy of a JSON-like structure with every string passed through `redact`."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value


def _before_send(event: Event, hint: Hint) -> Event | None:
    cleaned = cast("dict[str, Any]", scrub(event))
    _promote_ids(cleaned)
    return cast("Event", cleaned)


def _before_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb | None:
    return cast("Breadcrumb", scrub(crumb))


def _promote_ids(event: dict[str, Any]) -> None:
    # Loguru events carry `logger.bind(...)` extras as extra["extra"]; as tags they are searchable.
    extra = event.get("extra")
    bound = extra.get("extra") if isinstance(extra, dict) else None
    if not isinstance(bound, dict):
        return
    tags = event.get("tags")
    if not isinstance(tags, dict):
        tags = event["tags"] = {}
    for key in ID_KEYS:
        if key in bound and key not in tags:
            tags[key] = str(bound[key])


def _release() -> str | None:
    try:
        return f"flick@{version('flick')}"
    except PackageNotFoundError:
        return None
