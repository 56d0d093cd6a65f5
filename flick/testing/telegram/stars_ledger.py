"""The bot's Stars account on the offline Telegram: payments in, refunds out, the history."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from flick.testing.telegram.wire import raw, rpc_error


@dataclass
class StarCharge:
    charge_id: str
    user_id: int
    stars: int
    payload: bytes
    date: int = field(default_factory=lambda: int(time.time()))
    refunded_at: int | None = None
    subscription_period: int | None = None  # a Star subscription's payment


class StarsLedger:
    """What `payments.getStarsTransactions` reports: one inbound transaction per payment (the
    ones pushed with `tg.payment(...)` in XTR), one outbound refund per refunded charge."""

    def __init__(self) -> None:
        self.charges: dict[str, StarCharge] = {}

    def add(
        self,
        charge_id: str,
        user_id: int,
        stars: int,
        payload: bytes,
        subscription_period: int | None = None,
    ) -> None:
        charge = StarCharge(charge_id, user_id, stars, payload)
        charge.subscription_period = subscription_period
        self.charges.setdefault(charge_id, charge)

    def refund(self, request: Any, charge_id: str) -> None:
        """Mark a charge refunded; CHARGE_ALREADY_REFUNDED if it was (known or not)."""
        charge = self.charges.get(charge_id)
        if charge is None:
            # A charge the test never pushed: accept it, as Telegram would a real one.
            charge = self.charges[charge_id] = StarCharge(charge_id, 0, 0, b"")
        if charge.refunded_at is not None:
            raise rpc_error(request, "CHARGE_ALREADY_REFUNDED")
        charge.refunded_at = int(time.time())

    def transactions(self, request: Any, users: dict[int, Any]) -> Any:
        history: list[tuple[int, int, Any]] = []  # (date, order of events, transaction)
        for n, charge in enumerate(self.charges.values()):
            peer = raw.types.StarsTransactionPeer(peer=raw.types.PeerUser(user_id=charge.user_id))
            if not request.outbound and charge.stars:
                history.append((charge.date, n, _transaction(charge, peer, charge.stars, None)))
            if not request.inbound and charge.refunded_at is not None and charge.stars:
                refund = _transaction(charge, peer, -charge.stars, True)
                history.append((charge.refunded_at, len(self.charges) + n, refund))
        history.sort(key=lambda item: item[:2], reverse=not request.ascending)
        start = int(request.offset or 0)
        page = [tx for _, _, tx in history[start : start + request.limit]]
        more = start + request.limit < len(history)
        balance = sum(c.stars for c in self.charges.values() if c.refunded_at is None)
        return raw.types.payments.StarsStatus(
            balance=raw.types.StarsAmount(amount=balance, nanos=0),
            history=page,
            next_offset=str(start + request.limit) if more else None,
            chats=[],
            users=[users[c.user_id] for c in self.charges.values() if c.user_id in users],
        )


def _transaction(charge: StarCharge, peer: Any, stars: int, refund: bool | None) -> Any:
    return raw.types.StarsTransaction(
        id=charge.charge_id,
        amount=raw.types.StarsAmount(amount=stars, nanos=0),
        date=charge.refunded_at if refund else charge.date,
        peer=peer,
        refund=refund,
        bot_payload=charge.payload or None,
        subscription_period=charge.subscription_period,
    )
