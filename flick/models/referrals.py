"""Referrals: invite codes, who invited whom, and what it earned. The bonuses are money
(`flick.models.money`: the invitee's with their first purchase, the inviter's by their actor)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import asyncpg

from flick.models.db import pool


async def invite_code(user_id: int) -> str:
    """The user's invite code, made on first use (random: it says nothing about the user)."""
    for _ in range(5):
        try:
            code: str = await pool().fetchval(
                "UPDATE users SET invite_code = COALESCE(invite_code, $2) "
                "WHERE telegram_id = $1 RETURNING invite_code",
                user_id,
                secrets.token_urlsafe(6),  # 8 characters of A-Z a-z 0-9 _ -
            )
            return code
        except asyncpg.UniqueViolationError:  # someone has that one: draw again
            continue
    raise RuntimeError("no free invite code after 5 draws")


async def attach(invitee: int, code: str) -> tuple[str, int | None]:
    """Record that `invitee` came through the invite link with `code`.

    Returns (status, inviter): ok (recorded now, or this same link before and not yet counted),
    unknown (no such link), self (their own link), already (another link came first, or it
    counted already), customer (they have bought before: invites are for new customers).
    """
    inviter = await pool().fetchval("SELECT telegram_id FROM users WHERE invite_code = $1", code)
    if inviter is None:
        return "unknown", None
    if inviter == invitee:
        return "self", None
    async with pool().acquire() as conn, conn.transaction():
        existing = await conn.fetchrow(
            "SELECT inviter, rewarded_at IS NOT NULL AS rewarded FROM referrals WHERE invitee = $1",
            invitee,
        )
        if existing is not None:
            same = existing["inviter"] == inviter and not existing["rewarded"]
            return ("ok" if same else "already"), existing["inviter"]
        bought = await conn.fetchval('SELECT count(*) FROM payments WHERE "user" = $1', invitee)
        if bought:
            return "customer", None
        await conn.execute(
            "INSERT INTO referrals (inviter, invitee, inviter_bonus, invitee_bonus, created_at) "
            "VALUES ($1, $2, 0, 0, now()) ON CONFLICT (invitee) DO NOTHING",
            inviter,
            invitee,
        )
    return "ok", int(inviter)


@dataclass(frozen=True, slots=True)
class InviteSummary:
    invited: int  # came through the link
    counted: int  # of whom made a first purchase
    earned: int  # credits the inviter got for them
    invited_by: int | None  # who invited this user


async def summary(user_id: int) -> InviteSummary:
    row = await pool().fetchrow(
        "SELECT count(*) AS invited, count(rewarded_at) AS counted, "
        "COALESCE(SUM(inviter_bonus) FILTER (WHERE inviter_credited_at IS NOT NULL), 0) AS earned "
        "FROM referrals WHERE inviter = $1",
        user_id,
    )
    by = await pool().fetchval("SELECT inviter FROM referrals WHERE invitee = $1", user_id)
    return InviteSummary(row["invited"], row["counted"], int(row["earned"]), by)


async def inviters_owed() -> list[tuple[int, int]]:
    """(inviter, referral id) of every inviter bonus not credited yet: after a restart, each is
    handed to the inviter's actor again (the message that carried it lived in memory)."""
    rows = await pool().fetch(
        "SELECT inviter, id FROM referrals WHERE rewarded_at IS NOT NULL "
        "AND inviter_credited_at IS NULL AND inviter_bonus > 0 ORDER BY id"
    )
    return [(r["inviter"], r["id"]) for r in rows]
