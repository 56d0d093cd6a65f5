"""Star subscriptions on the offline Telegram: invoice links, subscribers, renewals, cancellations.

A bot sells a subscription with an invoice link (`payments.exportInvoice` with the invoice's
`subscription_period`: Telegram takes one period only, 30 days, and refuses one in a sent invoice).
Each subscriber's subscription is known by its first payment's charge id, which is what the bot
names in `payments.botCancelStarsSubscription` (turn renewal off, or `restore` it) and what the
user's own app names in `payments.changeStarsSubscription`; the bot hears of the user's changes
through `updateBotStarsSubscription`.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from flick.testing.telegram.wire import raw, rpc_error

#: The one period Telegram accepts for a bot subscription.
PERIOD = 30 * 24 * 3600


@dataclass
class InvoiceLink:
    slug: str
    title: str
    payload: bytes
    currency: str
    amount: int
    period: int | None  # seconds; None: a one-off invoice

    @property
    def url(self) -> str:
        return f"https://t.me/${self.slug}"


@dataclass
class StarSubscription:
    charge_id: str  # the first payment's
    user_id: int
    payload: bytes
    stars: int
    period: int
    until: int  # end of the period paid for (Unix time)
    canceled: bool = False  # renewal off
    bot_canceled: bool = False  # turned off by the bot (the user cannot turn it back on)
    charges: list[str] = field(default_factory=list)


class Subscriptions:
    """The bot's invoice links and its subscribers' subscriptions."""

    def __init__(self) -> None:
        self.links: dict[str, InvoiceLink] = {}
        self.by_charge: dict[str, StarSubscription] = {}
        self._slugs = itertools.count(1)

    def export(self, request: Any) -> Any:
        """payments.exportInvoice: a link, checked as a sent invoice is, and its period."""
        media = request.invoice_media
        if not isinstance(media, raw.types.InputMediaInvoice):
            raise rpc_error(request, "MEDIA_INVALID")
        invoice = media.invoice
        check_invoice(request, media)
        period = invoice.subscription_period
        if period is not None and (invoice.currency != "XTR" or period != PERIOD):
            raise rpc_error(request, "SUBSCRIPTION_PERIOD_INVALID")
        link = InvoiceLink(
            f"offline{next(self._slugs)}",
            media.title,
            media.payload,
            invoice.currency,
            sum(p.amount for p in invoice.prices),
            period,
        )
        self.links[link.url] = link
        return raw.types.payments.ExportedInvoice(url=link.url)

    def link(self, url: str) -> InvoiceLink:
        found = self.links.get(url)
        if found is None:
            raise AssertionError(f"the bot never made the invoice link {url!r}")
        return found

    def subscribe(self, link: InvoiceLink, user_id: int, charge_id: str) -> StarSubscription:
        assert link.period is not None, "not a subscription's link"
        until = int(time.time()) + link.period
        sub = StarSubscription(charge_id, user_id, link.payload, link.amount, link.period, until)
        sub.charges.append(charge_id)
        self.by_charge[charge_id] = sub
        return sub

    def renew(self, first_charge_id: str, charge_id: str) -> StarSubscription:
        sub = self.by_charge[first_charge_id]
        sub.until += sub.period
        sub.charges.append(charge_id)
        return sub

    def bot_cancel(self, request: Any, user_id: int | None, users: dict[int, Any]) -> bool:
        """payments.botCancelStarsSubscription, from the bot."""
        if user_id is None or user_id not in users:
            raise rpc_error(request, "USER_ID_INVALID")
        sub = self.by_charge.get(request.charge_id)
        if sub is None or sub.user_id != user_id:
            raise rpc_error(request, "CHARGE_ID_INVALID")
        if request.restore:
            if sub.bot_canceled:  # the bot can undo its own cancellation, not the user's
                sub.canceled = sub.bot_canceled = False
        else:
            sub.canceled = sub.bot_canceled = True
        return True

    def user_change(self, request: Any, user_id: int) -> StarSubscription:
        """payments.changeStarsSubscription, from the user's own app."""
        sub = self.by_charge.get(request.subscription_id)
        if sub is None or sub.user_id != user_id:
            raise rpc_error(request, "SUBSCRIPTION_ID_INVALID")
        if request.canceled is None:
            raise rpc_error(request, "SUBSCRIPTION_NOT_MODIFIED")
        if not request.canceled and sub.bot_canceled:
            raise rpc_error(request, "SUBSCRIPTION_NOT_MODIFIED")  # only the bot may undo that
        sub.canceled = bool(request.canceled)
        return sub


def check_invoice(request: Any, media: Any) -> None:
    """What Telegram checks in any invoice the bot makes: a payload of 1-128 bytes, and for
    Stars no payment provider and exactly one price."""
    invoice = media.invoice
    if not media.payload or len(media.payload) > 128:
        raise rpc_error(request, "INVOICE_PAYLOAD_INVALID")
    if invoice.currency == "XTR" and (media.provider or len(invoice.prices) != 1):
        raise rpc_error(request, "STARS_INVOICE_INVALID")
