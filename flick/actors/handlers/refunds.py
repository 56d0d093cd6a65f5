"""Refunds of Stars purchases: Telegram telling us of one, or an operator ordering one.

Either way the purchase's owner's actor takes back what it bought (`money.refund_payment`):
never below zero, and credits a running generation holds are taken if they come back. A
subscription's charge refunded also ends its renewal, here and at Telegram: a refund means the
operator and the user part ways on that plan (the user may subscribe again).
"""

from __future__ import annotations

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.scope import Scope
from flick.errors import TelegramRefused, TransientError
from flick.models import money
from flick.ports import RecipientGone, RecipientUnreachable


async def refunded(actor: Scope, e: ev.PaymentRefunded) -> None:
    await _take_back(actor, e.charge_id, note="")


async def refund_ordered(actor: Scope, m: msg.RefundPurchase) -> None:
    result = await _take_back(actor, m.charge_id, note=f"refunded by admin {m.admin_id}")
    actor.post(
        m.admin_id,
        msg.AdminReport(
            "admin_refunded" if result else "admin_already_refunded",
            (("charge", m.charge_id), ("n", result.taken if result else 0)),
        ),
    )


async def _take_back(actor: Scope, charge_id: str, note: str) -> money.PurchaseRefunded | None:
    result = await money.refund_payment(charge_id, actor.uid, note=note)
    if result is None:
        actor.log.info("refund of {} already recorded (or not this user's)", charge_id)
        return None
    actor.conv.balance = result.balance
    if result.already_spent or result.held:
        actor.log.warning(
            "refund of {}: {} credit(s) already spent, {} held by a running generation",
            charge_id,
            result.already_spent,
            result.held,
        )
    if result.kind == "subscription":
        await actor.say(
            "subscription_refunded",
            n=result.taken,
            spent=result.already_spent + result.held,
            balance=result.balance,
        )
    else:
        await actor.say("payment_refunded", n=result.taken, balance=result.balance)
    if result.subscription_charge is not None:
        try:
            await actor.ctx.outbox.edit_subscription(
                actor.uid, result.subscription_charge, canceled=True
            )
        except (TelegramRefused, TransientError, RecipientGone, RecipientUnreachable) as exc:
            # Recorded as off here: a renewal that comes anyway is credited and stopped again.
            actor.log.warning("renewal of refunded subscription not turned off: {}", exc)
    return result
