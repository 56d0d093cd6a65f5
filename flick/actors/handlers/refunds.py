"""Refunds of Stars purchases: Telegram telling us of one, or an operator ordering one.

Either way the purchase's owner's actor takes back what it bought (`money.refund_payment`):
never below zero, and credits a running generation holds are taken if they come back.
"""

from __future__ import annotations

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.scope import Scope
from flick.models import money


async def refunded(actor: Scope, e: ev.PaymentRefunded) -> None:
    await _take_back(actor, e.charge_id, note="")


async def refund_ordered(actor: Scope, m: msg.RefundPurchase) -> None:
    result = await _take_back(actor, m.charge_id, note=f"refunded by admin {m.admin_id}")
    actor.post(
        m.admin_id,
        msg.AdminReport(
            "admin_refunded" if result else "admin_already_refunded",
            (("charge", m.charge_id), ("taken", result.taken if result else 0)),
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
    await actor.say("payment_refunded", credits=result.taken, balance=result.balance)
    return result
