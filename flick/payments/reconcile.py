"""`flick payments reconcile`: credit Stars charges that Telegram has and our payments table lacks.

Telegram keeps the bot's Stars transactions (`payments.getStarsTransactions`; kurigram has no
wrapper, so the raw call goes through `Client.invoke`). Each inbound, unrefunded charge from a user
is credited through the same exactly-once path as a live payment: the unique charge id decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from loguru import logger

from flick.models import ledger, queries
from flick.payments.flow import order_id_of
from flick.payments.packages import CURRENCY, Package
from flick.telegram.stars import StarTransaction, star_transactions


@dataclass
class Report:
    seen: int = 0
    credited: list[StarTransaction] = field(default_factory=list)
    already: int = 0
    skipped: list[tuple[StarTransaction, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Stars transactions read: {self.seen}; already credited: {self.already}"]
        out += [f"credited {c.charge_id}: user {c.user_id}, {c.stars} Stars" for c in self.credited]
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


def credits_for(
    charge: StarTransaction, order: dict[str, Any] | None, packages: tuple[Package, ...]
) -> int:
    if order is not None and order["user_id"] == charge.user_id:
        return int(order["package_credits"])
    best = max((p.credits for p in packages if p.stars <= charge.stars), default=0)
    return best or 1


async def reconcile(
    charges: list[StarTransaction], packages: tuple[Package, ...], free_credits: int
) -> Report:
    report = Report(seen=len(charges))
    for charge in charges:
        if charge.refund:
            report.skipped.append((charge, "refunded at Telegram"))
            continue
        order_id = order_id_of(charge.payload)
        order = await queries.get_order(order_id) if order_id else None
        await ledger.ensure_user(charge.user_id, None, None, None, free_credits)
        credited = await ledger.credit_payment(
            charge.user_id,
            charge_id=charge.charge_id,
            provider_charge_id=None,
            payload=charge.payload,
            currency=CURRENCY,
            stars=charge.stars,
            credits=credits_for(charge, order, packages),
            order_id=order_id if order is not None else None,
            source="reconcile",
        )
        if credited is None:
            report.already += 1
        else:
            logger.bind(user_id=charge.user_id).warning(
                "reconcile credited charge {} that never reached the bot", charge.charge_id
            )
            report.credited.append(charge)
    return report


async def reconcile_command(settings: Any) -> int:
    """Connect to Telegram and to the database, reconcile, print what was done."""
    from flick.app import Flick
    from flick.payments.packages import build_packages
    from flick.pipeline.local import LocalImageProvider, LocalVideoProvider
    from flick.telegram.client import build_client
    from flick.telegram.gateway import connect
    from flick.testing.memory import RecordingOutbox

    client = build_client(settings)
    await connect(client, 30.0)
    try:
        # Neither flag: Telegram lists purchases and refunds alike.
        charges = charges_from(await star_transactions(client, inbound=False, outbound=False))
        # The engine's services (database, migrations), without Telegram updates.
        async with Flick(
            settings,
            RecordingOutbox(),
            image=LocalImageProvider(),
            video=LocalVideoProvider(settings.data_dir / "local-videos"),
            resume=False,
        ):
            report = await reconcile(
                charges, build_packages(settings.packages), settings.free_credits
            )
    finally:
        await client.stop()
    for line in report.lines():
        print(line)
    return 0
