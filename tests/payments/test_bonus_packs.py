"""Bonus packs: a package may carry bonus credits (PACKAGES=10+2:400). The bonus is on its button
and its invoice, and it is credited in the purchase's own transaction, on a ledger row of its own;
a refund takes the bonus back with what was bought."""

from __future__ import annotations

import pytest

from flick import events as ev
from flick.errors import ConfigError
from flick.i18n import t
from flick.settings import load_settings
from flick.testing.harnesses import HarnessFactory
from flick.testing.shop import Shop

UID = 1201
PACKAGES = "1:50,10+2:400"


async def test_the_bonus_is_on_the_button_and_the_invoice(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(packages=PACKAGES)
    await h.command(UID, "buy")
    await h.settle()
    offer = h.last_keyboard(UID).buttons()
    assert offer == [
        (t("en", "package_button", credits=1, stars=50), "buy:0"),
        (t("en", "package_button_bonus", credits=10, bonus=2, stars=400), "buy:1"),
    ]
    assert offer[1][0] == "10 🎬 + 2 free for 400 ⭐"
    invoice = await shop.buy(h, UID, 1)
    assert invoice.text == t("en", "package_title_bonus", credits=10, n=2)
    assert invoice.extra["description"] == t("en", "invoice_description_bonus", credits=10, n=2)
    assert invoice.extra["amount"] == 400  # the bonus is free: the price is the package's


async def test_the_bonus_is_credited_with_the_purchase_on_its_own_ledger_row(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(packages=PACKAGES)
    invoice = await shop.buy(h, UID, 1)
    await shop.pay(h, UID, invoice.extra["payload"], "charge-bonus", 400)
    await shop.pay(h, UID, invoice.extra["payload"], "charge-bonus", 400)  # redelivered
    money = await shop.money(UID)
    assert money.balance == 1 + 10 + 2 == money.ledger_sum
    assert money.reasons == ["free", "purchase", "bonus"]
    payment = money.payments[0]
    assert (payment["credits"], payment["bonus"], payment["kind"]) == (12, 2, "package")
    assert [r["payment"] for r in money.ledger[1:]] == [payment["id"]] * 2
    assert [r["delta"] for r in money.ledger[1:]] == [10, 2]
    # One transaction: the two rows were written together (the same transaction timestamp).
    assert money.ledger[1]["created_at"] == money.ledger[2]["created_at"]
    assert shop.texts(h, UID)[-1] == t("en", "payment_thanks_bonus", n=12, bonus=2, balance=13)


async def test_a_refund_takes_the_bonus_back_too(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness(packages=PACKAGES)
    invoice = await shop.buy(h, UID, 1)
    await shop.pay(h, UID, invoice.extra["payload"], "charge-bonus-r", 400)
    await h.send(shop.refunded(h, UID, "charge-bonus-r", 400))
    await h.settle()
    money = await shop.money(UID)
    assert money.balance == 1 == money.ledger_sum
    assert money.ledger[-1]["reason"] == "payment_refunded" and money.ledger[-1]["delta"] == -12
    assert shop.texts(h, UID)[-1] == t("en", "payment_refunded", n=12, balance=1)


async def test_a_charge_naming_no_order_gets_the_best_package_for_its_stars_bonus_included(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(packages=PACKAGES)
    await h.send(ev.PaymentSucceeded(h.user(UID), "pay:lost", "lost", "", "XTR", 400, "junk"))
    await h.settle()
    money = await shop.money(UID)
    assert money.balance == 1 + 12
    assert (money.payments[0]["credits"], money.payments[0]["bonus"]) == (12, 2)


@pytest.mark.parametrize("bad", ["10+-1:400", "10+x:400", "0+2:400", "10+2"])
def test_a_bad_package_is_refused_at_start_up(bad: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(_env_file=None, packages=bad)
    assert "PACKAGES" in refused.value.render()


def test_packages_parse_with_and_without_a_bonus() -> None:
    settings = load_settings(_env_file=None, packages="1:50, 10+2:400")
    assert settings.packages == [(1, 50, 0), (10, 400, 2)]
