"""Subscription plans: the server's list of Star subscriptions (PLANS=key:credits:stars).

Each plan is sold as a Telegram Star subscription: an invoice link with Telegram's one period,
30 days, charged again every period until the user (or the bot) cancels. The first payment and
every renewal credit the plan's credits, as sold: a renewal of a plan the operator changed or
removed since still brings what it was bought for (and a removed one is not renewed again).
"""

from __future__ import annotations

from dataclasses import dataclass

from flick.i18n import t
from flick.ports import Button, Keyboard

#: Telegram's subscription period: the only one it accepts (`subscription_period`).
SUBSCRIPTION_PERIOD = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Plan:
    key: str
    credits: int  # per period
    stars: int  # per period

    def title(self, lang: str) -> str:
        return t(lang, "plan_title", n=self.credits)

    def label(self, lang: str) -> str:
        return t(lang, "plan_button", n=self.credits, stars=self.stars)

    def description(self, lang: str) -> str:
        return t(lang, "plan_description", n=self.credits)


def build_plans(rows: list[tuple[str, int, int]]) -> dict[str, Plan]:
    return {key: Plan(key, credits, stars) for key, credits, stars in rows}


def keyboard(plans: dict[str, Plan], lang: str) -> Keyboard:
    return tuple((Button(p.label(lang), data=f"sub:plan:{p.key}"),) for p in plans.values())
