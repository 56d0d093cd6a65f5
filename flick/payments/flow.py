"""Stars payments inside a user's actor: order, invoice, pre-checkout, credit, refund.

The price always comes from the server's package and order rows; callback data and invoice
payloads are only ever looked up, never believed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from flick import events as ev
from flick.i18n import t
from flick.models import ledger, queries
from flick.payments.packages import CURRENCY, find

if TYPE_CHECKING:
    from flick.actors.user import UserActor

PAYLOAD_PREFIX = "order:"


def order_id_of(payload: str) -> uuid.UUID | None:
    if not payload.startswith(PAYLOAD_PREFIX):
        return None
    try:
        return uuid.UUID(payload[len(PAYLOAD_PREFIX) :])
    except ValueError:
        return None


async def buy_pressed(actor: UserActor, e: ev.ButtonPress, arg: str) -> None:
    outbox = actor.ctx.outbox
    if not arg:  # the plain "buy credits" button: show the packages
        await outbox.answer_button(e.callback_id)
        await actor.offer_packages("buy_intro")
        return
    package = find(actor.ctx.packages, f"buy:{arg}")
    if package is None:
        actor.log.info("refused a made-up package {!r}", arg[:32])
        await outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"), alert=True)
        return
    await outbox.answer_button(e.callback_id)
    order_id = await queries.create_order(
        actor.uid, package.credits, package.stars, actor.ctx.settings.order_ttl_seconds
    )
    await outbox.send_invoice(
        actor.user.chat_id,
        title=package.title(actor.lang),
        description=t(actor.lang, "invoice_description", credits=package.credits),
        payload=f"{PAYLOAD_PREFIX}{order_id}",
        currency=CURRENCY,
        amount=package.stars,
        label=package.title(actor.lang),
    )


async def _check_order(actor: UserActor, payload: str, currency: str, amount: int) -> str | None:
    """None when the order may be paid, else the catalog key of the reason it may not."""
    order_id = order_id_of(payload)
    order = await queries.get_order(order_id) if order_id else None
    if order is None or order["user_id"] != actor.uid:
        return "precheckout_unknown"
    if order["status"] != "pending":
        return "precheckout_paid"
    if order["expires_at"] < datetime.now(UTC):
        return "precheckout_expired"
    if currency != CURRENCY or amount != order["stars"]:
        return "precheckout_mismatch"
    return None


async def pre_checkout(actor: UserActor, e: ev.PreCheckout) -> None:
    # Telegram waits 10 seconds: answer every query, whatever happens in the check.
    try:
        problem = await _check_order(actor, e.payload, e.currency, e.total_amount)
    except Exception:
        actor.log.exception("pre-checkout check failed")
        problem = "precheckout_error"
    if problem is None:
        await actor.ctx.outbox.answer_pre_checkout(e.query_id, True)
    else:
        actor.log.info("pre-checkout refused: {}", problem)
        await actor.ctx.outbox.answer_pre_checkout(e.query_id, False, t(actor.lang, problem))


async def succeeded(actor: UserActor, e: ev.PaymentSucceeded) -> None:
    """Credit a charge exactly once. A charge we cannot match is still credited: they paid."""
    order_id = order_id_of(e.payload)
    order = await queries.get_order(order_id) if order_id else None
    if order is not None and order["user_id"] == actor.uid:
        credits = order["package_credits"]
    else:
        order_id = None
        credits = credits_for_stars(actor, e.total_amount)
        actor.log.warning("payment {} names no order of this user; credited by amount", e.charge_id)
    credited = await ledger.credit_payment(
        actor.uid,
        charge_id=e.charge_id,
        provider_charge_id=e.provider_charge_id,
        payload=e.payload,
        currency=e.currency,
        stars=e.total_amount,
        credits=credits,
        order_id=order_id,
    )
    if credited is None:
        actor.log.info("payment {} was already credited", e.charge_id)
        return
    actor.conv.balance = credited.balance
    actor.ctx.on_metric("payment", {}, e.total_amount)
    actor.ctx.on_metric("credits_granted", {"reason": "purchase"}, credits)
    await actor.say("payment_thanks", credits=credits, balance=credited.balance)
    await actor.continue_after_top_up()


def credits_for_stars(actor: UserActor, stars: int) -> int:
    """The most credits the price list gives for this many Stars (at least one package's worth)."""
    best = 0
    for package in actor.ctx.packages:
        if package.stars <= stars:
            best = max(best, package.credits)
    return best or 1


async def refunded(actor: UserActor, e: ev.PaymentRefunded) -> None:
    result = await ledger.refund_payment(e.charge_id)
    if result is None:
        actor.log.info("refund of {} already recorded (or unknown charge)", e.charge_id)
        return
    actor.conv.balance = result.balance
    if result.already_spent:
        actor.log.warning(
            "refund of {}: {} credit(s) were already spent", e.charge_id, result.already_spent
        )
    await actor.say("payment_refunded", credits=result.taken, balance=result.balance)


async def paysupport(actor: UserActor) -> None:
    rows = await queries.recent_payments(actor.uid)
    lines = [
        t(
            actor.lang,
            "paysupport_line",
            date=r["created_at"].strftime("%Y-%m-%d"),
            stars=r["stars_amount"],
            credits=r["credits"],
            status=r["status"],
            charge=r["telegram_payment_charge_id"],
        )
        for r in rows
    ]
    await actor.say(
        "paysupport",
        contact=actor.ctx.settings.support_contact,
        payments="\n".join(lines) or t(actor.lang, "paysupport_none"),
    )
