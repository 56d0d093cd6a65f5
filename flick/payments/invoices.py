"""Invoice payloads and the pre-checkout check: plain functions of the server's own records.

A payload names an order; nothing in it is believed, only looked up. Whether an order may be
paid is decided from the order row alone (its owner, state, expiry and price).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flick.models.orders import Order
from flick.payments.packages import CURRENCY, Package

PAYLOAD_PREFIX = "order:"


def payload_for(order_id: uuid.UUID) -> str:
    return f"{PAYLOAD_PREFIX}{order_id}"


def order_id_of(payload: str) -> uuid.UUID | None:
    if not payload.startswith(PAYLOAD_PREFIX):
        return None
    try:
        return uuid.UUID(payload[len(PAYLOAD_PREFIX) :])
    except ValueError:
        return None


def precheckout_problem(
    order: Order | None, user_id: int, currency: str, amount: int
) -> str | None:
    """None when the order may be paid now, else the catalog key of the reason it may not."""
    if order is None or order.user_id != user_id:
        return "precheckout_unknown"
    if order.status != "pending":
        return "precheckout_paid" if order.status == "paid" else "precheckout_unknown"
    if order.expires_at < datetime.now(UTC):
        return "precheckout_expired"
    if currency != CURRENCY or amount != order.stars:
        return "precheckout_mismatch"
    return None


def credits_for(
    order: Order | None, user_id: int, stars: int, packages: tuple[Package, ...]
) -> tuple[int, int]:
    """What a charge buys, as (credits, of which bonus): its order's package when the order is
    the payer's own; otherwise the most credits the price list gives for that many Stars, its
    bonus included (at least one credit: they paid)."""
    if order is not None and order.user_id == user_id:
        return order.credits, order.bonus
    best = max(
        (p for p in packages if p.stars <= stars), key=lambda p: (p.total, p.bonus), default=None
    )
    return (best.total, best.bonus) if best is not None else (1, 0)
