"""Credit packages: the server's price list. Invoices and callbacks are checked against it."""

from __future__ import annotations

from dataclasses import dataclass

from flick.i18n import t
from flick.ports import Button, Keyboard
from flick.untrusted import parse_int

CURRENCY = "XTR"  # Telegram Stars


@dataclass(frozen=True, slots=True)
class Package:
    index: int
    credits: int
    stars: int

    def title(self, lang: str) -> str:
        return t(lang, "package_title", credits=self.credits)

    def label(self, lang: str) -> str:
        return t(lang, "package_button", credits=self.credits, stars=self.stars)


def build_packages(pairs: list[tuple[int, int]]) -> tuple[Package, ...]:
    return tuple(Package(i, credits, stars) for i, (credits, stars) in enumerate(pairs))


def find(packages: tuple[Package, ...], data: str) -> Package | None:
    """The package a `buy:<index>` button names, or None for anything a client made up."""
    _, _, index = data.partition(":")
    number = parse_int(index, max_digits=3)
    if number is None:
        return None
    return packages[number] if number < len(packages) else None


def keyboard(packages: tuple[Package, ...], lang: str) -> Keyboard:
    return tuple((Button(p.label(lang), data=f"buy:{p.index}"),) for p in packages)
