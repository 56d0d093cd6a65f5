"""Credit packages: the server's price list. Invoices and callbacks are checked against it.

A package may carry bonus credits (PACKAGES=10+2:400): shown on its button and invoice, and
credited in the same transaction as the purchase, on a ledger row of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from flick.i18n import t
from flick.ports import Button, Keyboard
from flick.untrusted import parse_int

CURRENCY = "XTR"  # Telegram Stars


@dataclass(frozen=True, slots=True)
class Package:
    index: int
    credits: int  # bought (the bonus not included)
    stars: int
    bonus: int = 0

    @property
    def total(self) -> int:
        """Everything the purchase credits."""
        return self.credits + self.bonus

    def title(self, lang: str) -> str:
        if self.bonus:
            return t(lang, "package_title_bonus", credits=self.credits, n=self.bonus)
        return t(lang, "package_title", n=self.credits)

    def label(self, lang: str) -> str:
        if self.bonus:
            return t(
                lang,
                "package_button_bonus",
                credits=self.credits,
                bonus=self.bonus,
                stars=self.stars,
            )
        return t(lang, "package_button", credits=self.credits, stars=self.stars)

    def description(self, lang: str) -> str:
        if self.bonus:
            return t(lang, "invoice_description_bonus", credits=self.credits, n=self.bonus)
        return t(lang, "invoice_description", n=self.credits)


def build_packages(rows: list[tuple[int, int, int]]) -> tuple[Package, ...]:
    return tuple(
        Package(i, credits, stars, bonus) for i, (credits, stars, bonus) in enumerate(rows)
    )


def find(packages: tuple[Package, ...], data: str) -> Package | None:
    """The package a `buy:<index>` button names, or None for anything a client made up."""
    _, _, index = data.partition(":")
    number = parse_int(index, max_digits=3)
    if number is None:
        return None
    return packages[number] if number < len(packages) else None


def keyboard(packages: tuple[Package, ...], lang: str) -> Keyboard:
    return tuple((Button(p.label(lang), data=f"buy:{p.index}"),) for p in packages)
