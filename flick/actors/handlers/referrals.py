"""Referrals: the user's invite link (/invite), arriving through someone's (`/start ref_…`), and
the bonuses a first purchase brings (the invitee's with the purchase, the inviter's here).

Nobody earns anything for signing up: the bonuses come when the invitee makes a first purchase,
once per invitee. So accounts made only to collect a bonus earn nothing.
"""

from __future__ import annotations

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.handlers.generations import continue_after_top_up
from flick.actors.scope import Scope
from flick.models import money, referrals

PREFIX = "ref_"


def invite_link(actor: Scope, code: str) -> str | None:
    username = actor.ctx.bot_username
    return f"https://t.me/{username}?start={PREFIX}{code}" if username else None


async def cmd_invite(actor: Scope, e: ev.Command) -> None:
    link = invite_link(actor, await referrals.invite_code(actor.uid))
    if link is None:
        actor.log.warning("/invite: the bot's username is unknown (BOT_USERNAME)")
        await actor.say("invite_unavailable")
        return
    settings = actor.ctx.settings
    summary = await referrals.summary(actor.uid)
    rewards = settings.referral_inviter_credits or settings.referral_invitee_credits
    await actor.say(
        "invite" if rewards else "invite_no_bonus",
        link=link,
        n=settings.referral_inviter_credits if rewards else summary.invited,
        invitee=settings.referral_invitee_credits,
        invited=summary.invited,
        counted=summary.counted,
        earned=summary.earned,
    )


async def arrived_through(actor: Scope, code: str) -> None:
    """`/start ref_<code>`: remember who invited this user (the first valid link only)."""
    status, _inviter = await referrals.attach(actor.uid, code[:32])
    actor.log.info("invite link {}: {}", code[:32], status)
    if status == "ok":
        bonus = actor.ctx.settings.referral_invitee_credits
        await actor.say("referral_joined" if bonus else "referral_joined_plain", n=bonus)
    else:
        await actor.say(f"referral_{status}")


def bonuses(actor: Scope) -> tuple[int, int]:
    """(inviter's, invitee's) bonus for a first purchase, as configured now."""
    s = actor.ctx.settings
    return s.referral_inviter_credits, s.referral_invitee_credits


async def after_first_purchase(actor: Scope, referred: money.Referred | None) -> None:
    """A purchase that counted for this user's referral: tell them of their bonus (credited
    with the purchase), and hand the inviter's to the inviter's actor."""
    if referred is None:
        return
    if referred.invitee_bonus:
        await actor.say(
            "referral_bonus_invitee", n=referred.invitee_bonus, balance=actor.conv.balance
        )
    if referred.inviter_bonus:
        actor.post(referred.inviter, msg.ReferralBonus(referred.referral_id))


async def on_referral_bonus(actor: Scope, m: msg.ReferralBonus) -> None:
    """Someone this user invited made a first purchase: the inviter's bonus, exactly once."""
    credited = await money.credit_inviter(actor.uid, m.referral_id)
    if credited is None:
        actor.log.info("referral {} already credited (or not this user's)", m.referral_id)
        return
    actor.conv.balance = credited.balance
    actor.ctx.on_metric("credits_granted", {"reason": "referral"}, credited.credits)
    await actor.say("referral_bonus_inviter", n=credited.credits, balance=credited.balance)
    await continue_after_top_up(actor)
