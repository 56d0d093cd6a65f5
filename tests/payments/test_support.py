"""Telegram's rules for digital goods: /paysupport shows the user's payments and whom to write to,
/terms shows the terms of service."""

from __future__ import annotations

from datetime import UTC, datetime

from flick.i18n import t
from flick.testing.harnesses import HarnessFactory
from flick.testing.shop import Shop

UID = 1101


async def test_paysupport_lists_the_payments(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness(support_contact="@help_desk")
    await h.command(UID, "paysupport")
    await h.settle()
    assert shop.texts(h, UID)[-1] == t(
        "en", "paysupport", contact="@help_desk", payments=t("en", "paysupport_none")
    )

    first = await shop.buy(h, UID, 0)
    await shop.pay(h, UID, first.extra["payload"], "charge-one", 50)
    second = await shop.buy(h, UID, 2)
    await shop.pay(h, UID, second.extra["payload"], "charge-two", 400)
    await h.send(shop.refunded(h, UID, "charge-one", 50))
    await h.settle()
    await h.command(UID, "paysupport")
    await h.settle()

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        t(
            "en",
            "paysupport_line",
            date=today,
            stars=400,
            n=10,
            status="paid",
            charge="charge-two",
        ),
        t(
            "en",
            "paysupport_line",
            date=today,
            stars=50,
            n=1,
            status="refunded",
            charge="charge-one",
        ),
    ]
    assert shop.texts(h, UID)[-1] == t(
        "en", "paysupport", contact="@help_desk", payments="\n".join(lines)
    )


async def test_paysupport_shows_only_the_users_own_payments(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    await shop.pay(h, UID + 1, "", "charge-someone-else", 50)
    await h.command(UID, "paysupport")
    await h.settle()
    reply = shop.texts(h, UID)[-1]
    assert "charge-someone-else" not in reply
    assert t("en", "paysupport_none") in reply


async def test_terms_shows_the_configured_terms(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness(terms_text="Be nice. Credits never expire.")
    await h.command(UID, "terms")
    await h.settle()
    assert shop.texts(h, UID) == [t("en", "terms", terms="Be nice. Credits never expire.")]
    # the same text is what the consent step shows before the first video
    await h.command(UID, "create")
    await h.settle()
    assert shop.texts(h, UID)[-1] == t("en", "consent_ask", terms="Be nice. Credits never expire.")


async def test_terms_and_paysupport_in_russian(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness()
    await h.command(UID, "language")
    await h.settle()
    await h.press(UID, "lang:ru", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    await h.command(UID, "terms")
    await h.command(UID, "paysupport")
    await h.settle()
    assert shop.texts(h, UID)[-2:] == [
        t("ru", "terms", terms=h.settings.terms_text),
        t(
            "ru",
            "paysupport",
            contact=h.settings.support_contact,
            payments=t("ru", "paysupport_none"),
        ),
    ]
