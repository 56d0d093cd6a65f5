"""The bot's Telegram Stars history (`payments.getStarsTransactions`), as plain data.

kurigram has no wrapper for it; this one keeps `pyrogram` inside `flick/telegram` for callers
such as `flick payments reconcile`.
"""

from __future__ import annotations

from typing import Any

import pyrogram
from pyrogram import Client

from flick.payments.reconcile import StarTransaction

# The generated `raw` package's `import *` re-exports are invisible to strict mypy.
_raw: Any = pyrogram.raw


async def star_transactions(
    client: Client, *, inbound: bool = True, outbound: bool = False, page: int = 100
) -> list[StarTransaction]:
    """The bot's Stars transactions with users, newest first, every page of them.

    inbound: purchases; outbound: refunds. Transactions with no user behind them (ads revenue,
    withdrawals) are left out.
    """
    found: list[StarTransaction] = []
    offset = ""
    while True:
        status = await client.invoke(
            _raw.functions.payments.GetStarsTransactions(
                peer=_raw.types.InputPeerSelf(),
                offset=offset,
                limit=page,
                inbound=inbound or None,
                outbound=outbound or None,
            )
        )
        for tx in status.history or []:
            user_id = getattr(getattr(tx.peer, "peer", None), "user_id", None)
            if user_id is None:
                continue
            payload = tx.bot_payload.decode("utf-8", "replace") if tx.bot_payload else ""
            found.append(
                StarTransaction(
                    charge_id=str(tx.id),
                    user_id=int(user_id),
                    stars=int(tx.amount.amount),
                    payload=payload,
                    refund=bool(tx.refund),
                    date=int(tx.date),
                    subscription_period=tx.subscription_period or None,
                )
            )
        offset = status.next_offset or ""
        if not offset:
            return found
