"""The tables. A balance changes only together with a row that explains it (see ledger.py)."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    BigSerial,
    Boolean,
    DoublePrecision,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.table import Table

from flick.models.gateway_tables import GATEWAY_TABLES


class User(Table, tablename="users"):
    # The Telegram user id is the key: every event carries it, so no lookup is needed.
    telegram_id = BigInt(primary_key=True)
    username = Varchar(length=64, null=True, index=True)
    first_name = Varchar(length=128, null=True)
    language_code = Varchar(length=16, null=True)
    language = Varchar(length=8, null=True)  # chosen with /language; wins over language_code
    balance = Integer(default=0)
    # Credits a refunded purchase still claims from running generations (see models/money.py).
    credits_owed = Integer(default=0)
    # The part of the balance that came with a subscription plan and lapses at `plan_until`
    # (PLAN_UNUSED_CREDITS=expire; always 0 with carry). Spent first. See models/money.py.
    plan_credits = Integer(default=0)
    plan_until = Timestamptz(null=True, default=None)
    # The user's own invite link is t.me/<bot>?start=ref_<invite_code> (made on first /invite).
    invite_code = Varchar(length=16, null=True, default=None, unique=True)
    blocked = Boolean(default=False)  # blocked the bot: stop messaging them
    consent_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow(), index=True)
    last_seen_at = Timestamptz(default=TimestamptzNow())


class UserSession(Table, tablename="user_sessions"):
    user = ForeignKey(references=User, unique=True, index=True, null=False)
    state = Varchar(length=32)
    data = JSONB(default="{}")
    updated_at = Timestamptz(default=TimestamptzNow())


class Generation(Table, tablename="generations"):
    id = BigSerial(primary_key=True)
    user = ForeignKey(references=User, index=True, null=False, on_delete=OnDelete.restrict)
    style = Varchar(length=64)
    # The lifecycle in flick/fsm/generation.py; failed and canceled always come refunded.
    status = Varchar(length=16, default="queued", index=True)
    photo1_key = Varchar(length=255)
    photo2_key = Varchar(length=255)
    # What started it (unique per user): a handler retried after a failure of ours finds the
    # generation it already paid for instead of paying again.
    request_key = Varchar(length=128, null=True, default=None)
    combined_key = Varchar(length=255, null=True, default=None)
    video_key = Varchar(length=255, null=True, default=None)
    video_file_id = Varchar(length=255, null=True, default=None)  # Telegram's, for re-sends
    image_provider = Varchar(length=32, default="")
    video_provider = Varchar(length=32, default="")
    prediction_id = Varchar(length=128, null=True, default=None)
    # When a prediction was last asked for: set before the create call, so a resumed step knows a
    # prediction may exist whose id never reached this row (the provider is searched for it).
    prediction_requested_at = Timestamptz(null=True, default=None)
    status_message_id = BigInt(null=True, default=None)
    error_class = Varchar(length=64, null=True, default=None)
    error_message = Text(null=True, default=None)
    image_usage = JSONB(null=True, default=None)  # OpenAI's `usage` block
    predict_seconds = DoublePrecision(null=True, default=None)  # Replicate's metrics.predict_time
    cost_usd = DoublePrecision(default=0.0)
    charged = Integer(default=1)  # credits taken for it
    plan_charged = Integer(default=0)  # of which plan credits (they go back there if refunded)
    # How the style made it (flick/routes.py): compose_animate or direct, the quality tier paid
    # for, and the video model asked (saved before the create, so a resumed run asks the same).
    route = Varchar(length=16, default="compose_animate")
    tier = Varchar(length=16, null=True, default=None)
    video_model = Varchar(length=128, null=True, default=None)
    refunded = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow(), index=True)
    updated_at = Timestamptz(default=TimestamptzNow())
    finished_at = Timestamptz(null=True, default=None)


class Order(Table, tablename="orders"):
    """A pending purchase: the server's record of what an invoice is for."""

    id = UUID(primary_key=True, default=UUID4())
    user = ForeignKey(references=User, index=True, null=False, on_delete=OnDelete.restrict)
    package_credits = Integer()  # what the invoice buys (bonus included) or a plan's credits
    stars = Integer()
    bonus = Integer(default=0)  # of package_credits, the package's bonus credits
    plan = Varchar(length=32, null=True, default=None)  # a subscription plan's key, else a package
    status = Varchar(length=16, default="pending")  # pending, paid
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()


class Subscription(Table, tablename="subscriptions"):
    """A user's Telegram Stars subscription to a plan: one row per (user, invoice payload).

    Telegram repeats the invoice payload on every renewal; the first payment's charge id is what
    the bot names when it cancels or restores renewal. `period_end` is Telegram's expiry of the
    period paid for last.
    """

    id = BigSerial(primary_key=True)
    user = ForeignKey(references=User, index=True, null=False, on_delete=OnDelete.restrict)
    payload = Varchar(length=128)
    plan = Varchar(length=32)
    credits = Integer()  # per period, as sold (the operator may change or remove the plan since)
    stars = Integer()
    charge_id = Varchar(length=255)  # the first payment's: for payments.botCancelStarsSubscription
    period_end = Timestamptz()
    renews = Boolean(default=True)
    canceled_by = Varchar(length=8, null=True, default=None)  # user (in Telegram), bot
    payment_failed = Boolean(default=False)  # Telegram could not charge the last renewal
    renewals = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Payment(Table, tablename="payments"):
    id = BigSerial(primary_key=True)
    user = ForeignKey(references=User, index=True, null=False, on_delete=OnDelete.restrict)
    telegram_payment_charge_id = Varchar(length=255, unique=True)
    provider_payment_charge_id = Varchar(length=255, null=True, default=None)
    order = ForeignKey(
        references=Order, null=True, default=None, index=True, on_delete=OnDelete.restrict
    )
    invoice_payload = Varchar(length=255, default="")
    currency = Varchar(length=8, default="XTR")
    stars_amount = Integer()
    credits = Integer()  # everything the charge credited, a package's bonus included
    bonus = Integer(default=0)  # of which a package's bonus
    kind = Varchar(length=16, default="package", index=True)  # package, subscription
    subscription = ForeignKey(
        references=Subscription, null=True, default=None, index=True, on_delete=OnDelete.restrict
    )
    status = Varchar(length=16, default="paid")  # paid, refunded
    source = Varchar(length=16, default="update")  # update, reconcile
    created_at = Timestamptz(default=TimestamptzNow(), index=True)
    refunded_at = Timestamptz(null=True, default=None)


class LedgerEntry(Table, tablename="ledger"):
    """One row per balance change: the balance is explainable from its history."""

    id = BigSerial(primary_key=True)
    user = ForeignKey(references=User, index=True, null=False, on_delete=OnDelete.restrict)
    delta = Integer()
    balance_after = Integer()
    # free, purchase, bonus, subscription, plan_expired, promo, referral, generation, refund,
    # payment_refunded, grant
    reason = Varchar(length=32)
    generation = ForeignKey(
        references=Generation, null=True, default=None, index=True, on_delete=OnDelete.restrict
    )
    payment = ForeignKey(
        references=Payment, null=True, default=None, index=True, on_delete=OnDelete.restrict
    )
    note = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())


class HandledUpdate(Table, tablename="handled_updates"):
    """Telegram updates a user's actor has handled: a redelivery after a restart is ignored.

    Bounded: the actor loads only the newest ids, and rows older than a few days are pruned
    (Telegram does not redeliver that late).
    """

    id = BigSerial(primary_key=True)
    user = BigInt()
    event_id = Varchar(length=128)
    handled_at = Timestamptz(default=TimestamptzNow(), index=True)


class Broadcast(Table, tablename="broadcasts"):
    """An operator's message to every user; `cursor` makes it resumable after a restart."""

    id = BigSerial(primary_key=True)
    admin_id = BigInt()
    text = Text()
    status = Varchar(length=16, default="running", index=True)  # running, done
    cursor = BigInt(default=0)  # the last telegram_id handled, in ascending order
    total = Integer(default=0)
    sent = Integer(default=0)
    failed = Integer(default=0)
    progress_message_id = BigInt(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    finished_at = Timestamptz(null=True, default=None)


class PromoCode(Table, tablename="promo_codes"):
    """An operator's code worth `credits`, good for `max_uses` users until `expires_at`."""

    id = BigSerial(primary_key=True)
    code = Varchar(length=32, unique=True)  # normalised: A-Z, 0-9, "_" and "-"
    credits = Integer()
    max_uses = Integer()
    used = Integer(default=0)
    expires_at = Timestamptz(null=True, default=None)
    disabled_at = Timestamptz(null=True, default=None)
    created_by = BigInt(default=0)
    created_at = Timestamptz(default=TimestamptzNow())


class PromoRedemption(Table, tablename="promo_redemptions"):
    """One user's use of one code (unique per code and user); `request_key` is the update."""

    id = BigSerial(primary_key=True)
    code = ForeignKey(references=PromoCode, index=True, null=False, on_delete=OnDelete.restrict)
    user = ForeignKey(references=User, index=True, null=False, on_delete=OnDelete.restrict)
    credits = Integer()
    request_key = Varchar(length=128, default="")
    created_at = Timestamptz(default=TimestamptzNow())


class Referral(Table, tablename="referrals"):
    """Who invited whom (one inviter per invitee), and the bonuses of the first purchase.

    `rewarded_at`: the invitee's first purchase counted (their bonus credited with it);
    `inviter_credited_at`: the inviter's bonus credited, by the inviter's actor.
    """

    id = BigSerial(primary_key=True)
    inviter = ForeignKey(references=User, index=True, null=False, on_delete=OnDelete.restrict)
    invitee = ForeignKey(
        references=User, unique=True, index=True, null=False, on_delete=OnDelete.restrict
    )
    payment = ForeignKey(
        references=Payment, null=True, default=None, index=True, on_delete=OnDelete.restrict
    )
    inviter_bonus = Integer(default=0)
    invitee_bonus = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    rewarded_at = Timestamptz(null=True, default=None)
    inviter_credited_at = Timestamptz(null=True, default=None)


TABLES: tuple[type[Table], ...] = (
    User,
    UserSession,
    Generation,
    Order,
    Subscription,
    Payment,
    LedgerEntry,
    HandledUpdate,
    Broadcast,
    PromoCode,
    PromoRedemption,
    Referral,
    *GATEWAY_TABLES,
)
