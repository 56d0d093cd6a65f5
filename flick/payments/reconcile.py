"""Reconciliation: Stars charges Telegram lists that our payments table lacks.

Telegram keeps the bot's Stars transactions (`flick.telegram.stars`). Each inbound, unrefunded
charge from a user that we never recorded is handed to that user's actor, which credits it
through the same exactly-once path as a live payment (the unique charge id decides). `flick run`
does this by itself at start-up; `flick payments reconcile` does it on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from flick.models import orders


@dataclass(frozen=True, slots=True)
class StarTransaction:
    """One line of the bot's Stars history, as `flick.telegram.stars` reads it."""

    charge_id: str
    user_id: int
    stars: int  # negative for money going out (a refund)
    payload: str
    refund: bool
    date: int
    subscription_period: int | None = None  # a Star subscription's payment


@dataclass
class Report:
    seen: int = 0
    missing: list[StarTransaction] = field(default_factory=list)
    already: int = 0
    skipped: list[tuple[StarTransaction, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Stars transactions read: {self.seen}; already recorded: {self.already}"]
        out += [f"credited {c.charge_id}: user {c.user_id}, {c.stars} Stars" for c in self.missing]
        out += [f"skipped {c.charge_id}: {why}" for c, why in self.skipped]
        return out


def charges_from(transactions: list[StarTransaction]) -> list[StarTransaction]:
    """Users' purchases, each marked refunded when Telegram also lists its refund."""
    refunded = {tx.charge_id for tx in transactions if tx.refund or tx.stars < 0}
    return [
        replace(tx, refund=tx.refund or tx.charge_id in refunded)
        for tx in transactions
        if tx.stars > 0
    ]


async def find_missing(charges: list[StarTransaction]) -> Report:
    """Which purchases we never recorded (to credit), which we have, which to leave alone."""
    report = Report(seen=len(charges))
    known = await orders.known_charges([c.charge_id for c in charges])
    for charge in charges:
        if charge.charge_id in known:
            report.already += 1
        elif charge.refund:
            report.skipped.append((charge, "refunded at Telegram"))
        else:
            report.missing.append(charge)
    return report
