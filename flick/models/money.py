"""The one money API: every balance change, each in one transaction with the row that explains it.

Purchase, spend, refund, free credit, grant, the refund of a purchase: these are the only
functions that touch `users.balance`, always together with a ledger row naming the reason (and the
payment or generation behind it). Each returns what it did (the new balance, the amount actually
applied), never an absolute balance for someone else to write: the user's actor learns its new
balance from the result, so a concurrent spend can never be overwritten.

A purchase refunded at Telegram while a running generation holds the credit it bought: the
shortfall is remembered on the user (`credits_owed`, at most what running generations hold) and
taken from that generation's refund if it fails, so the user never keeps both Stars and credit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from flick.fsm.generation import GenerationRecord
from flick.models import generations
from flick.models.db import pool


async def _apply(
    conn: asyncpg.Connection,
    user_id: int,
    delta: int,
    reason: str,
    *,
    generation_id: int | None = None,
    payment_id: int | None = None,
    note: str = "",
) -> int:
    """Change a balance and write its ledger row. Must run inside the caller's transaction."""
    balance: int = await conn.fetchval(
        "UPDATE users SET balance = balance + $2 WHERE telegram_id = $1 RETURNING balance",
        user_id,
        delta,
    )
    await conn.execute(
        'INSERT INTO ledger ("user", delta, balance_after, reason, generation, payment, note) '
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        user_id,
        delta,
        balance,
        reason,
        generation_id,
        payment_id,
        note,
    )
    return balance


# ---- accounts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    balance: int
    language: str | None
    language_code: str | None
    consent: bool
    blocked: bool
    created: bool
    session: tuple[str, dict[str, Any]] | None = None
    handled: tuple[str, ...] = ()  # ids of this user's recently handled updates


# One statement, so one round trip: an actor's load is on the path of a new user's first reply.
# A new user gets their free credits and the ledger row that explains them in the same statement
# (a single statement is its own transaction); `xmax = 0` tells a fresh insert from an update.
# A username belongs to one Telegram account at a time: whoever had it before gives it up here,
# so an operator naming @someone never reaches the account that used to be called that.
_OPEN_ACCOUNT = """
WITH u AS (
    INSERT INTO users (telegram_id, username, first_name, language_code, balance)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (telegram_id) DO UPDATE SET
        username = EXCLUDED.username,
        first_name = EXCLUDED.first_name,
        language_code = COALESCE(EXCLUDED.language_code, users.language_code),
        last_seen_at = now()
    RETURNING telegram_id, balance, language, language_code,
        consent_at IS NOT NULL AS consent, blocked, (xmax = 0) AS created
), free AS (
    INSERT INTO ledger ("user", delta, balance_after, reason, note)
    SELECT telegram_id, $5, balance, 'free', 'welcome credits' FROM u
    WHERE u.created AND $5 > 0
), renamed AS (
    UPDATE users SET username = NULL
    WHERE $2::text IS NOT NULL AND lower(username) = lower($2::text) AND telegram_id <> $1
)
SELECT u.*, s.state AS session_state, s.data AS session_data,
    ARRAY(SELECT event_id FROM handled_updates h WHERE h."user" = $1
          ORDER BY h.handled_at DESC LIMIT $6) AS handled
FROM u LEFT JOIN user_sessions s ON s."user" = u.telegram_id
"""


async def open_account(
    user_id: int,
    username: str | None,
    first_name: str | None,
    language_code: str | None,
    free_credits: int,
    remember: int = 64,
) -> Account:
    """Load a user, their session and recent update ids, creating them (free credits, once)."""
    row = await pool().fetchrow(
        _OPEN_ACCOUNT,
        user_id,
        fit(username, 64),
        fit(first_name, 128),
        fit(language_code, 16),
        max(free_credits, 0),
        remember,
    )
    state = row["session_state"]
    return Account(
        balance=row["balance"],
        language=row["language"],
        language_code=row["language_code"],
        consent=row["consent"],
        blocked=row["blocked"],
        created=row["created"],
        session=None if state is None else (state, json.loads(row["session_data"])),
        handled=tuple(row["handled"]),
    )


def fit(text: str | None, length: int) -> str | None:
    """What a client sent, made storable: PostgreSQL text holds no NUL and no lone surrogate,
    and the column has a length. A name that does not fit must never crash-loop an actor."""
    if text is None:
        return None
    clean = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return clean[:length]


# ---- generations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    record: GenerationRecord | None  # None: the balance is too low
    balance: int
    fresh: bool = False  # False: this request had already started it (a retried handler)


async def start_generation(
    user_id: int,
    style: str,
    photo_keys: tuple[str, str],
    *,
    request_key: str,
    image_provider: str,
    video_provider: str,
) -> Started:
    """Take one credit and write the generation row (`record` None: the balance is too low).

    Idempotent per `request_key`: a handler retried after a failure of ours finds the generation
    it already paid for instead of paying again.
    """
    async with pool().acquire() as conn, conn.transaction():
        balance = await conn.fetchval(
            "SELECT balance FROM users WHERE telegram_id = $1 FOR UPDATE", user_id
        )
        existing = await generations.by_request(conn, user_id, request_key)
        if existing is not None:
            record = await generations.get(existing, conn)
            assert record is not None
            return Started(record, int(balance), fresh=False)
        if balance is None or balance < 1:
            return Started(None, balance or 0)
        record = await generations.insert(
            conn,
            user_id=user_id,
            style=style,
            photo_keys=photo_keys,
            request_key=request_key,
            image_provider=image_provider,
            video_provider=video_provider,
        )
        assert record is not None  # the row lock above serialises this user's starts
        balance = await _apply(conn, user_id, -1, "generation", generation_id=record.id)
    return Started(record, balance, fresh=True)


@dataclass(frozen=True, slots=True)
class GenerationRefund:
    record: GenerationRecord
    balance: int
    returned: int  # credits the user got back (less than charged if a refunded purchase owed)


async def refund_generation(
    gen_id: int, trigger: str, error_class: str, error_message: str
) -> GenerationRefund | None:
    """End a generation with `fail` or `cancel` and give its credit back, exactly once.

    None when the lifecycle refuses: it ended already, or it is past the point of no return
    (a /cancel while the video is being delivered).
    """
    async with pool().acquire() as conn, conn.transaction():
        record = await generations.end(conn, gen_id, trigger, error_class, error_message)
        if record is None:
            return None
        uid = record.user_id
        balance = await _apply(conn, uid, record.charged, "refund", generation_id=gen_id)
        owed = await conn.fetchval(
            "SELECT credits_owed FROM users WHERE telegram_id = $1 FOR UPDATE", uid
        )
        taken = min(owed, record.charged)
        if taken:
            await conn.execute(
                "UPDATE users SET credits_owed = credits_owed - $2 WHERE telegram_id = $1",
                uid,
                taken,
            )
            balance = await _apply(
                conn,
                uid,
                -taken,
                "payment_refunded",
                generation_id=gen_id,
                note="taken back: its purchase was refunded while this generation held it",
            )
    return GenerationRefund(record, balance, record.charged - taken)


# ---- payments -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credited:
    payment_id: int
    balance: int
    credits: int


async def credit_payment(
    user_id: int,
    *,
    charge_id: str,
    provider_charge_id: str | None,
    payload: str,
    currency: str,
    stars: int,
    credits: int,
    order_id: Any | None,
    source: str = "update",
) -> Credited | None:
    """Record a successful payment and credit it. None when this charge id was seen before.

    The order is linked and marked paid only when it is the payer's own: a payment made with
    someone else's (forwarded) invoice pays for nothing of theirs.
    """
    async with pool().acquire() as conn, conn.transaction():
        if order_id is not None:
            owner = await conn.fetchval('SELECT "user" FROM orders WHERE id = $1', order_id)
            if owner != user_id:
                order_id = None
        payment_id = await conn.fetchval(
            'INSERT INTO payments ("user", telegram_payment_charge_id, provider_payment_charge_id, '
            '"order", invoice_payload, currency, stars_amount, credits, status, source) '
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'paid', $9) "
            "ON CONFLICT (telegram_payment_charge_id) DO NOTHING RETURNING id",
            user_id,
            charge_id,
            provider_charge_id,
            order_id,
            payload[:255],
            currency,
            stars,
            credits,
            source,
        )
        if payment_id is None:
            return None
        if order_id is not None:
            await conn.execute(
                "UPDATE orders SET status = 'paid' WHERE id = $1 AND \"user\" = $2",
                order_id,
                user_id,
            )
        balance = await _apply(conn, user_id, credits, "purchase", payment_id=payment_id)
    return Credited(payment_id, balance, credits)


@dataclass(frozen=True, slots=True)
class PurchaseRefunded:
    user_id: int
    balance: int
    taken: int  # taken from the balance now
    held: int  # to be taken from running generations' refunds, if they fail
    already_spent: int  # spent on videos the user received: not taken back


async def refund_payment(charge_id: str, user_id: int, note: str = "") -> PurchaseRefunded | None:
    """Mark a purchase refunded and take back what it bought, once per charge.

    Only `user_id`'s own payment: a refund update from one user never touches another's money.
    Never below zero: credits already spent on delivered videos stay spent; credits held by a
    running generation are taken if that generation's credit comes back.
    """
    async with pool().acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE payments SET status = 'refunded', refunded_at = now() "
            "WHERE telegram_payment_charge_id = $1 AND status = 'paid' AND \"user\" = $2 "
            "RETURNING id, credits",
            charge_id,
            user_id,
        )
        if row is None:
            return None
        balance = await conn.fetchval(
            "SELECT balance FROM users WHERE telegram_id = $1 FOR UPDATE", user_id
        )
        taken = min(row["credits"], balance)
        short = row["credits"] - taken
        owed_now = await conn.fetchval(
            "SELECT credits_owed FROM users WHERE telegram_id = $1", user_id
        )
        held = max(0, min(short, await generations.held_credits(conn, user_id) - owed_now))
        if held:
            await conn.execute(
                "UPDATE users SET credits_owed = credits_owed + $2 WHERE telegram_id = $1",
                user_id,
                held,
            )
        spent = short - held
        text = note or (f"{spent} credit(s) were already spent" if spent else "")
        balance = await _apply(
            conn, user_id, -taken, "payment_refunded", payment_id=row["id"], note=text
        )
    return PurchaseRefunded(user_id, balance, taken, held, spent)


# ---- operators ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Granted:
    applied: int  # what actually changed: a correction never takes the balance below zero
    balance: int


async def grant(user_id: int, credits: int, note: str) -> Granted:
    """An operator's grant (or a correction, when negative); never below zero."""
    async with pool().acquire() as conn, conn.transaction():
        balance = await conn.fetchval(
            "SELECT balance FROM users WHERE telegram_id = $1 FOR UPDATE", user_id
        )
        if balance is None:
            raise LookupError(f"unknown user {user_id}")
        delta = max(credits, -balance)
        if delta == 0:
            return Granted(0, balance)
        return Granted(delta, await _apply(conn, user_id, delta, "grant", note=note))
