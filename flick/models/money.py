"""The one money API: every balance change, each in one transaction with the row that explains it.

Purchase (and its bonus), subscription payment, spend, refund, free credit, grant, promo code,
referral bonus, expiring plan credits, the refund of a purchase: these are the only functions
that touch `users.balance`, always together with a ledger row naming the reason (and the
payment or generation behind it). Each returns what it did (the new balance, the amount actually
applied), never an absolute balance for someone else to write: the user's actor learns its new
balance from the result, so a concurrent spend can never be overwritten.

A purchase refunded at Telegram while a running generation holds the credit it bought: the
shortfall is remembered on the user (`credits_owed`, at most what running generations hold) and
taken from that generation's refund if it fails, so the user never keeps both Stars and credit.

Plan credits: `users.plan_credits` is the part of the balance the current subscription period
brought, spent first. With PLAN_UNUSED_CREDITS=expire they are good until `users.plan_until`:
what is left when the next period is paid for, or when the period lapses without renewal, is
taken away on a `plan_expired` ledger row. With `carry` (no `plan_until`) what is left stays as
ordinary credits, and the next period's ledger row says how many were carried over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from flick.fsm.generation import GenerationRecord
from flick.models import generation_jobs, generations
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
    plan_delta: int = 0,
) -> int:
    """Change a balance and write its ledger row. Must run inside the caller's transaction.

    `plan_delta` moves the expiring plan credits along; whatever happens, they stay within
    0 and the new balance (so a take-back takes ordinary credits first).
    """
    balance: int = await conn.fetchval(
        "UPDATE users SET balance = balance + $2, "
        "plan_credits = LEAST(GREATEST(plan_credits + $3, 0), balance + $2) "
        "WHERE telegram_id = $1 RETURNING balance",
        user_id,
        delta,
        plan_delta,
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


#: A user's row, locked for a balance change, with whether their plan credits have lapsed.
_LOCK_USER = (
    "SELECT balance, plan_credits, plan_until, "
    "(plan_until IS NOT NULL AND plan_until <= now()) AS lapsed "
    "FROM users WHERE telegram_id = $1 FOR UPDATE"
)


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
    plan_lapsed: bool = False  # unused plan credits whose period ended: `expire_lapsed_plan`


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
        consent_at IS NOT NULL AS consent, blocked, (xmax = 0) AS created,
        (plan_credits > 0 AND plan_until IS NOT NULL AND plan_until <= now()) AS plan_lapsed
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
    return _account(row)


# What open_account returns, read only: no commit (so no wait for the WAL) on a reply's path.
_FIND_ACCOUNT = """
SELECT u.balance, u.language, u.language_code, u.consent_at IS NOT NULL AS consent, u.blocked,
    false AS created,
    (u.plan_credits > 0 AND u.plan_until IS NOT NULL AND u.plan_until <= now()) AS plan_lapsed,
    s.state AS session_state, s.data AS session_data,
    ARRAY(SELECT event_id FROM handled_updates h WHERE h."user" = $1
          ORDER BY h.handled_at DESC LIMIT $2) AS handled
FROM users u LEFT JOIN user_sessions s ON s."user" = u.telegram_id
WHERE u.telegram_id = $1
"""


async def find_account(user_id: int, remember: int = 64) -> Account | None:
    """A user as open_account would return them, without writing; None for a user not yet
    stored (open_account creates them)."""
    row = await pool().fetchrow(_FIND_ACCOUNT, user_id, remember)
    return None if row is None else _account(row)


def new_account(language_code: str | None, free_credits: int) -> Account:
    """The account open_account creates for a user it does not know."""
    return Account(
        balance=max(free_credits, 0),
        language=None,
        language_code=fit(language_code, 16),
        consent=False,
        blocked=False,
        created=True,
    )


def _account(row: asyncpg.Record) -> Account:
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
        plan_lapsed=row["plan_lapsed"],
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
    price: int = 1,
    route: str = "compose_animate",
    tier: str | None = None,
) -> Started:
    """Take `price` credits and write the generation row (`record` None: the balance is too low).

    `price` is the style's tier's, read from the configuration by the caller as it charges,
    never from a button. Idempotent per `request_key`: a handler retried after a failure of ours
    finds the generation it already paid for instead of paying again.
    """
    if price < 1:
        raise ValueError(f"a generation costs at least one credit, not {price}")
    async with pool().acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_LOCK_USER, user_id)
        balance = row["balance"] if row else None
        existing = await generations.by_request(conn, user_id, request_key)
        if existing is not None:
            record = await generations.get(existing, conn)
            assert record is not None
            return Started(record, int(balance or 0), fresh=False)
        plan = 0
        if row is not None and row["plan_credits"]:
            if row["lapsed"]:  # a plan period ended unrenewed: its credits go first
                balance = await _expire_plan(conn, user_id, row["plan_credits"], "lapsed")
            else:
                # Spent from the expiring credits first.
                plan = min(int(row["plan_credits"]), price)
        if balance is None or balance < price:
            return Started(None, balance or 0)
        record = await generations.insert(
            conn,
            user_id=user_id,
            style=style,
            photo_keys=photo_keys,
            request_key=request_key,
            image_provider=image_provider,
            video_provider=video_provider,
            charged=price,
            route=route,
            tier=tier,
        )
        assert record is not None  # the row lock above serialises this user's starts
        if plan:
            await conn.execute(
                "UPDATE generations SET plan_charged = $2 WHERE id = $1", record.id, plan
            )
        balance = await _apply(
            conn, user_id, -price, "generation", generation_id=record.id, plan_delta=-plan
        )
        # Paid and handed over at once: a charge never waits for a job that was lost.
        await generation_jobs.hand_over(conn, record.id)
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
        await generation_jobs.withdraw(conn, gen_id)
        uid = record.user_id
        # Back where it came from: to the plan's credits while that period lasts.
        plan_back = await conn.fetchval(
            "SELECT CASE WHEN u.plan_until > now() THEN g.plan_charged ELSE 0 END "
            'FROM generations g JOIN users u ON u.telegram_id = g."user" WHERE g.id = $1',
            gen_id,
        )
        balance = await _apply(
            conn, uid, record.charged, "refund", generation_id=gen_id, plan_delta=plan_back or 0
        )
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
class Referred:
    """A first purchase that counted for a referral: the invitee's bonus came with it."""

    referral_id: int
    inviter: int
    inviter_bonus: int  # for the inviter's actor to credit (`credit_inviter`)
    invitee_bonus: int


@dataclass(frozen=True, slots=True)
class Credited:
    payment_id: int
    balance: int
    credits: int  # everything credited for the charge, the bonus included
    bonus: int = 0
    referred: Referred | None = None


async def _insert_payment(
    conn: asyncpg.Connection,
    user_id: int,
    *,
    charge_id: str,
    provider_charge_id: str | None,
    order_id: Any | None,
    payload: str,
    currency: str,
    stars: int,
    credits: int,
    bonus: int,
    kind: str,
    source: str,
) -> int | None:
    """The payment row, or None when this charge id was recorded before (exactly once)."""
    payment_id: int | None = await conn.fetchval(
        'INSERT INTO payments ("user", telegram_payment_charge_id, provider_payment_charge_id, '
        '"order", invoice_payload, currency, stars_amount, credits, bonus, kind, status, source) '
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'paid', $11) "
        "ON CONFLICT (telegram_payment_charge_id) DO NOTHING RETURNING id",
        user_id,
        charge_id,
        provider_charge_id,
        order_id,
        payload[:255],
        currency,
        stars,
        credits,
        bonus,
        kind,
        source,
    )
    if payment_id is not None and order_id is not None:
        await conn.execute(
            "UPDATE orders SET status = 'paid' WHERE id = $1 AND \"user\" = $2", order_id, user_id
        )
    return payment_id


async def _own_order(conn: asyncpg.Connection, order_id: Any | None, user_id: int) -> Any | None:
    """The order, if it is the payer's own: someone else's (forwarded) invoice pays for nothing
    of theirs."""
    if order_id is None:
        return None
    owner = await conn.fetchval('SELECT "user" FROM orders WHERE id = $1', order_id)
    return order_id if owner == user_id else None


async def _reward_referral(
    conn: asyncpg.Connection, user_id: int, payment_id: int, bonuses: tuple[int, int]
) -> tuple[Referred | None, int | None]:
    """Inside a purchase's transaction: the invitee's first purchase counts for their referral
    (once: `rewarded_at`), and their own bonus comes with it. The inviter's bonus is for the
    inviter's actor. Returns the referral and the new balance (None: nothing changed)."""
    inviter_bonus, invitee_bonus = bonuses
    row = await conn.fetchrow(
        "UPDATE referrals SET rewarded_at = now(), payment = $2, inviter_bonus = $3, "
        "invitee_bonus = $4 WHERE invitee = $1 AND rewarded_at IS NULL RETURNING id, inviter",
        user_id,
        payment_id,
        inviter_bonus,
        invitee_bonus,
    )
    if row is None:
        return None, None
    balance = None
    if invitee_bonus > 0:
        balance = await _apply(
            conn,
            user_id,
            invitee_bonus,
            "referral",
            payment_id=payment_id,
            note=f"referral #{row['id']}: invited by {row['inviter']}, bonus of a first purchase",
        )
    return Referred(row["id"], row["inviter"], inviter_bonus, invitee_bonus), balance


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
    bonus: int = 0,
    referral: tuple[int, int] = (0, 0),
) -> Credited | None:
    """Record a successful purchase and credit it. None when this charge id was seen before.

    `credits` is everything it buys, of which `bonus` is a package's bonus (its own ledger row,
    same transaction). The order is linked and marked paid only when it is the payer's own.
    A first purchase counts for the buyer's referral (`referral`: inviter's and invitee's bonus).
    """
    async with pool().acquire() as conn, conn.transaction():
        order_id = await _own_order(conn, order_id, user_id)
        payment_id = await _insert_payment(
            conn,
            user_id,
            charge_id=charge_id,
            provider_charge_id=provider_charge_id,
            order_id=order_id,
            payload=payload,
            currency=currency,
            stars=stars,
            credits=credits,
            bonus=bonus,
            kind="package",
            source=source,
        )
        if payment_id is None:
            return None
        balance = await _apply(conn, user_id, credits - bonus, "purchase", payment_id=payment_id)
        if bonus:
            balance = await _apply(
                conn, user_id, bonus, "bonus", payment_id=payment_id, note="a package's bonus"
            )
        referred, after = await _reward_referral(conn, user_id, payment_id, referral)
    return Credited(payment_id, after or balance, credits, bonus, referred)


@dataclass(frozen=True, slots=True)
class SubscriptionCredited:
    payment_id: int
    subscription_id: int
    balance: int
    credits: int
    expired: int  # unused plan credits of the period before, taken away (expire mode)
    renews: bool  # False: renewal is off (cancelled by the user or the bot)
    canceled_by: str | None
    created: bool  # the first payment of this subscription
    referred: Referred | None = None
    carried: int = 0  # unused plan credits of the period before, kept (carry mode)


async def _expire_plan(conn: asyncpg.Connection, user_id: int, amount: int, why: str) -> int:
    """Take away `amount` unused plan credits (all of them); returns the new balance."""
    notes = {
        "renewed": "unused plan credits expired: a new period started",
        "lapsed": "unused plan credits expired: the period ended without renewal",
    }
    balance = await _apply(
        conn, user_id, -amount, "plan_expired", plan_delta=-amount, note=notes[why]
    )
    await conn.execute(
        "UPDATE users SET plan_until = NULL WHERE telegram_id = $1 AND plan_credits = 0", user_id
    )
    return balance


async def credit_subscription(
    user_id: int,
    *,
    charge_id: str,
    provider_charge_id: str | None,
    payload: str,
    stars: int,
    credits: int,
    plan: str,
    order_id: Any | None,
    period_end: datetime,
    first: bool,
    expire_unused: bool,
    source: str = "update",
    referral: tuple[int, int] = (0, 0),
) -> SubscriptionCredited | None:
    """Record a subscription payment (the first or a renewal) and credit the plan's credits.

    Exactly once per charge id, like a purchase. The subscription row is found by its invoice
    payload (Telegram repeats it on every renewal) and moved to the new `period_end`. With
    `expire_unused`, the credits of the period before that are still unused expire first
    (a `plan_expired` ledger row), and the new ones are the plan credits until `period_end`;
    a late delivery of an older period's payment is credited as ordinary credits.
    """
    async with pool().acquire() as conn, conn.transaction():
        order_id = await _own_order(conn, order_id, user_id)
        payment_id = await _insert_payment(
            conn,
            user_id,
            charge_id=charge_id,
            provider_charge_id=provider_charge_id,
            order_id=order_id,
            payload=payload,
            currency="XTR",
            stars=stars,
            credits=credits,
            bonus=0,
            kind="subscription",
            source=source,
        )
        if payment_id is None:
            return None
        before = await conn.fetchval(
            'SELECT period_end FROM subscriptions WHERE "user" = $1 AND payload = $2',
            user_id,
            payload[:128],
        )
        sub = await conn.fetchrow(
            'INSERT INTO subscriptions ("user", payload, plan, credits, stars, charge_id, '
            "period_end, renews, canceled_by, payment_failed, renewals, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, true, NULL, false, 0, now(), now()) "
            'ON CONFLICT ("user", payload) DO UPDATE SET '
            "period_end = GREATEST(subscriptions.period_end, EXCLUDED.period_end), "
            "charge_id = CASE WHEN $8 THEN EXCLUDED.charge_id ELSE subscriptions.charge_id END, "
            "renews = subscriptions.renews OR $8, "
            "canceled_by = CASE WHEN $8 THEN NULL ELSE subscriptions.canceled_by END, "
            "payment_failed = false, "
            "renewals = subscriptions.renewals + CASE WHEN $8 THEN 0 ELSE 1 END, "
            "updated_at = now() "
            "RETURNING id, renews, canceled_by, (xmax = 0) AS created",
            user_id,
            payload[:128],
            plan,
            credits,
            stars,
            charge_id,
            period_end,
            first,
        )
        await conn.execute(
            "UPDATE payments SET subscription = $2 WHERE id = $1", payment_id, sub["id"]
        )
        user = await conn.fetchrow(_LOCK_USER, user_id)
        expired, carried, plan_delta = 0, 0, 0
        note = f"plan {plan}, paid until {period_end:%Y-%m-%d}"
        if expire_unused:
            until = user["plan_until"]
            if until is None or period_end > until:  # a new period: the old one's credits go
                expired = user["plan_credits"]
                if expired:
                    await _expire_plan(conn, user_id, expired, "renewed")
                plan_delta = credits
                await conn.execute(
                    "UPDATE users SET plan_until = $2 WHERE telegram_id = $1", user_id, period_end
                )
        elif before is None or period_end > before:
            # Carried over: the last period's unused credits stay, as ordinary credits now (said
            # on the ledger); the bucket holds the new period's, spent first as always.
            carried = user["plan_credits"]
            plan_delta = credits - carried
            if carried:
                note += f"; {carried} unused credit(s) of the period before carried over"
        balance = await _apply(
            conn,
            user_id,
            credits,
            "subscription",
            payment_id=payment_id,
            plan_delta=plan_delta,
            note=note,
        )
        referred, after = await _reward_referral(conn, user_id, payment_id, referral)
    return SubscriptionCredited(
        payment_id,
        sub["id"],
        after or balance,
        credits,
        expired,
        sub["renews"],
        sub["canceled_by"],
        sub["created"],
        referred,
        carried,
    )


@dataclass(frozen=True, slots=True)
class PlanExpired:
    expired: int
    balance: int


async def expire_lapsed_plan(user_id: int) -> PlanExpired | None:
    """A plan period that ended unrenewed takes its unused credits along (once)."""
    async with pool().acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_LOCK_USER, user_id)
        if row is None or not row["lapsed"] or not row["plan_credits"]:
            return None
        amount = row["plan_credits"]
        return PlanExpired(amount, await _expire_plan(conn, user_id, amount, "lapsed"))


@dataclass(frozen=True, slots=True)
class PurchaseRefunded:
    user_id: int
    balance: int
    taken: int  # taken from the balance now
    held: int  # to be taken from running generations' refunds, if they fail
    already_spent: int  # spent on videos the user received: not taken back
    kind: str = "package"  # package, subscription
    # A subscription charge refunded: its renewal is now off here; the actor asks Telegram too.
    subscription_charge: str | None = None


async def refund_payment(charge_id: str, user_id: int, note: str = "") -> PurchaseRefunded | None:
    """Mark a purchase refunded and take back what it bought, once per charge.

    Only `user_id`'s own payment: a refund update from one user never touches another's money.
    What it bought includes a package's bonus and, for the purchase that counted for the
    buyer's referral, the buyer's referral bonus (the inviter keeps theirs). Never below zero:
    credits already spent on delivered videos stay spent; credits held by a running generation
    are taken if that generation's credit comes back. A subscription charge refunded turns its
    renewal off.
    """
    async with pool().acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE payments SET status = 'refunded', refunded_at = now() "
            "WHERE telegram_payment_charge_id = $1 AND status = 'paid' AND \"user\" = $2 "
            "RETURNING id, credits, kind, subscription",
            charge_id,
            user_id,
        )
        if row is None:
            return None
        referral = await conn.fetchval(
            "SELECT COALESCE(SUM(invitee_bonus), 0) FROM referrals WHERE payment = $1", row["id"]
        )
        bought = row["credits"] + referral
        balance = await conn.fetchval(
            "SELECT balance FROM users WHERE telegram_id = $1 FOR UPDATE", user_id
        )
        taken = min(bought, balance)
        short = bought - taken
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
        subscription = row["kind"] == "subscription"
        balance = await _apply(
            conn,
            user_id,
            -taken,
            "payment_refunded",
            payment_id=row["id"],
            note=text,
            plan_delta=-taken if subscription else 0,
        )
        cancel = None
        if row["subscription"] is not None:
            cancel = await conn.fetchval(
                "UPDATE subscriptions SET renews = false, canceled_by = 'bot', updated_at = now() "
                "WHERE id = $1 RETURNING charge_id",
                row["subscription"],
            )
    return PurchaseRefunded(user_id, balance, taken, held, spent, row["kind"], cancel)


# ---- promo codes and referrals ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Redeemed:
    # ok, unknown, disabled, expired, used_up, already (this user redeemed it before)
    status: str
    credits: int = 0
    balance: int | None = None


async def redeem_promo(user_id: int, code: str, request_key: str) -> Redeemed:
    """Redeem a (normalised) promo code: at most once per user, never beyond its uses.

    The code's row is locked for the transaction, so many users redeeming its last use at once
    are served one after the other: one gets it, the others hear it is used up. Idempotent per
    `request_key`: a handler retried after a failure of ours is told the same success again.
    """
    async with pool().acquire() as conn, conn.transaction():
        promo = await conn.fetchrow(
            "SELECT id, credits, max_uses, used, disabled_at IS NOT NULL AS disabled, "
            "(expires_at IS NOT NULL AND expires_at <= now()) AS expired "
            "FROM promo_codes WHERE code = $1 FOR UPDATE",
            code,
        )
        if promo is None:
            return Redeemed("unknown")
        mine = await conn.fetchrow(
            'SELECT request_key, credits FROM promo_redemptions WHERE code = $1 AND "user" = $2',
            promo["id"],
            user_id,
        )
        if mine is not None:
            if mine["request_key"] == request_key:  # our own retry: it did count
                balance = await conn.fetchval(
                    "SELECT balance FROM users WHERE telegram_id = $1", user_id
                )
                return Redeemed("ok", mine["credits"], balance)
            return Redeemed("already")
        if promo["disabled"]:
            return Redeemed("disabled")
        if promo["expired"]:
            return Redeemed("expired")
        if promo["used"] >= promo["max_uses"]:
            return Redeemed("used_up")
        await conn.execute(
            'INSERT INTO promo_redemptions (code, "user", credits, request_key, created_at) '
            "VALUES ($1, $2, $3, $4, now())",
            promo["id"],
            user_id,
            promo["credits"],
            request_key[:128],
        )
        await conn.execute("UPDATE promo_codes SET used = used + 1 WHERE id = $1", promo["id"])
        balance = await _apply(conn, user_id, promo["credits"], "promo", note=f"code {code}")
    return Redeemed("ok", promo["credits"], balance)


@dataclass(frozen=True, slots=True)
class InviterCredited:
    invitee: int
    credits: int
    balance: int


async def credit_inviter(inviter_id: int, referral_id: int) -> InviterCredited | None:
    """The inviter's bonus for a referral whose invitee made a first purchase, exactly once."""
    async with pool().acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE referrals SET inviter_credited_at = now() WHERE id = $1 AND inviter = $2 "
            "AND rewarded_at IS NOT NULL AND inviter_credited_at IS NULL "
            "RETURNING invitee, inviter_bonus",
            referral_id,
            inviter_id,
        )
        if row is None or row["inviter_bonus"] <= 0:
            return None
        balance = await _apply(
            conn,
            inviter_id,
            row["inviter_bonus"],
            "referral",
            note=f"referral #{referral_id}: invited {row['invitee']}, who made a first purchase",
        )
    return InviterCredited(row["invitee"], row["inviter_bonus"], balance)


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
