"""The same money story, step by step, against the embedded PostgreSQL and an external server.

The external one is FLICK_TEST_DATABASE_URL's server, or the machine's PostgreSQL on
127.0.0.1:5432; where neither answers, that half is skipped (CI's machines have it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from flick.models import db, migrations, money
from flick.testing import services

SYSTEM = "postgresql://postgres@127.0.0.1:5432/postgres"


def _system_answers() -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", 5432)) == 0


@asynccontextmanager
async def server(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    saved = os.environ.pop(services.TEST_DATABASE_ENV, None)
    try:
        if kind == "external":
            os.environ[services.TEST_DATABASE_ENV] = saved or SYSTEM
        async with services.test_postgres(tmp_path) as url:
            yield url
    finally:
        os.environ.pop(services.TEST_DATABASE_ENV, None)
        if saved is not None:
            os.environ[services.TEST_DATABASE_ENV] = saved


async def story() -> list[Any]:
    """Create a user, pay twice with one charge id, spend, refund: what each step returned."""
    seen: list[Any] = []
    user = await money.open_account(5, "ann", "Ann", "en", free_credits=1)
    seen.append((user.balance, user.created))
    again = await money.open_account(5, "ann", "Ann", "en", free_credits=1)
    seen.append((again.balance, again.created))
    for _ in range(2):
        paid = await money.credit_payment(
            5,
            charge_id="ch-1",
            provider_charge_id=None,
            payload="x",
            currency="XTR",
            stars=225,
            credits=5,
            order_id=None,
        )
        seen.append(paid.balance if paid else None)
    started = await money.start_generation(
        5, "hug", ("a", "b"), request_key="r1", image_provider="local", video_provider="local"
    )
    assert started.record is not None
    seen.append(started.balance)
    for _ in range(2):
        refund = await money.refund_generation(started.record.id, "fail", "x", "boom")
        seen.append(refund.balance if refund else None)
    refunded = await money.refund_payment("ch-1", 5)
    seen.append((refunded.balance, refunded.taken) if refunded else None)
    seen.append(await db.pool().fetchval('SELECT sum(delta) FROM ledger WHERE "user" = 5'))
    return seen


async def test_same_behaviour_on_embedded_and_external_postgresql(tmp_path: Path) -> None:
    if not (os.environ.get(services.TEST_DATABASE_ENV) or _system_answers()):
        pytest.skip("no external PostgreSQL answers here")
    results = {}
    for kind in ("embedded", "external"):
        async with server(kind, tmp_path / kind) as url, db.connection_pool(url, 1, 2):
            assert await migrations.apply()  # an empty database gets the whole schema
            assert await migrations.pending() == []
            version = await db.pool().fetchval("SHOW server_version")
            results[kind] = await story()
        print(kind, version, results[kind])
    assert results["embedded"] == results["external"]
    assert results["embedded"] == [(1, True), (1, False), 6, None, 5, 6, None, (1, 5), 1]
