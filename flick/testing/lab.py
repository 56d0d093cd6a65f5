"""The machines of a multi-host test, on one machine (tests/hosts).

    async with Lab(tmp_path, gateways=["gw1", "gw2"], workers=["w1", "w2", "w3"]) as lab:
        first = await lab.start_gateway("gw1")
        worker = await lab.start_worker("w1")

Each role is a host of its own (flick.testing.netns): "data" runs PostgreSQL and S3
(flick.testing.data_host), gateways run `flick run` on the shared offline Telegram
(flick.testing.telegram.hub, flick.testing.hosted_gateway), workers run `flick worker`. The test
process is a host on the same network: the Telegram hub and the fake providers listen on its
address there (`lab.address`), so every host reaches them and the test still reads what they
recorded; the test reads the database through `lab.database_url` as the hosts do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncpg

from flick.models import db, migrations
from flick.testing.children import Child
from flick.testing.data_host import read_services
from flick.testing.engine import make_jpeg
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.netns import Hosts
from flick.testing.providers import checked, fake_openai, fake_replicate, provider_env
from flick.testing.telegram.builders import Incoming
from flick.testing.telegram.hub import TelegramHub
from flick.testing.telegram.wire import RawUser, raw

DATA = "data"
STOP_SECONDS = 30.0

#: What a gateway logs (flick.runtime, flick.testing.hosted_gateway) as it becomes the standby,
#: and once it has caught up on what Telegram kept for it.
STANDBY = "standby, waiting for the active gateway"
CAUGHT_UP = "telegram: caught up on "


class Lab:
    def __init__(
        self,
        tmp: Path,
        *,
        gateways: Sequence[str] = ("gw1", "gw2"),
        workers: Sequence[str] = (),
        bot_token: str | None = None,
    ) -> None:
        self.tmp = tmp
        self.hosts = Hosts([DATA, *gateways, *workers])
        self.hub = TelegramHub()
        # A bot of this lab's own: its gateway lock key is nobody else's.
        self.bot_token = bot_token or f"70{secrets.randbelow(10**8):08d}:lab-token"
        self.bucket = f"lab-{secrets.token_hex(6)}"
        self.services: dict[str, str] = {}
        self.hub_address = ""
        self.provider_env: dict[str, str] = {}  # set by `providers()` once the fakes listen
        self._data: Child | None = None
        self._data_root: Path | None = None

    @property
    def address(self) -> str:
        """The test process's own address on the test network: where fakes must listen."""
        return self.hosts.own_address

    @property
    def database_url(self) -> str:
        return self.services["DATABASE_URL"]

    async def __aenter__(self) -> Self:
        # PostgreSQL runs as another user when we are root: a directory outside pytest's 0700
        # tree (flick.testing.services.postgres_dir says why).
        self._data_root = Path(tempfile.mkdtemp(prefix="flick-lab-"))
        try:
            await self.hosts.__aenter__()
            root, address = str(self._data_root), self.hosts.address(DATA)
            self._data = data = await self.hosts.spawn(
                DATA, "flick.testing.data_host", "serve", root, address,
                env={**os.environ, "TMPDIR": root},  # weed's unix sockets: a directory of its own
            )  # fmt: skip
            await data.said("ready")
            self.services = read_services(self._data_root)
            async with db.connection_pool(self.database_url, 1, 2):
                await migrations.apply()
            self.hub_address = await self.hub.start(self.address)
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        # Flick first (SIGKILL, as a test may have done already): no process of it then sees
        # its database or its Telegram go away; then the hub, then the data host.
        for child in self.hosts.children:
            if child is not self._data:
                await child.kill()
        await self.hub.stop()
        if self._data is not None and self._data.proc.returncode is None:
            # PostgreSQL stopped, not killed: a killed one leaves its shared memory behind.
            self._data.proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._data.proc.wait(), STOP_SECONDS)
        await self.hosts.stop()  # SIGKILLs whatever still runs on every host
        if self._data_root is not None:
            shutil.rmtree(self._data_root, ignore_errors=True)

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @asynccontextmanager
    async def providers(
        self, openai: FakeOpenAI | None = None, replicate: FakeReplicate | None = None
    ) -> AsyncIterator[tuple[FakeOpenAI, FakeReplicate]]:
        """The fake providers on the test network, checked against their specs as
        `flick.testing.providers.checked` does; every Flick started meanwhile uses them."""
        openai = openai or fake_openai()
        replicate = replicate or fake_replicate()
        openai.bind = replicate.bind = self.address
        async with checked(openai), checked(replicate):
            self.provider_env = provider_env(openai.base_url, replicate.base_url)
            try:
                yield openai, replicate
            finally:
                self.provider_env = {}

    def env(self, role: str, **extra: str) -> dict[str, str]:
        """The settings every Flick process of the lab shares, as `flick run` reads them."""
        return {
            **os.environ,
            **self.services,
            "S3_BUCKET": self.bucket,
            "DATA_DIR": str(self.tmp / role),
            "API_ID": "12345",
            "API_HASH": "c0ffee5eed0123456789abcdefabcdef",
            "BOT_TOKEN": self.bot_token,
            "IMAGE_PROVIDER": "local",
            "VIDEO_PROVIDER": "local",
            "FACE_CHECK": "false",
            "SESSION_STORE": "database",
            "HEALTH_ADDRESS": "127.0.0.1:0",
            **self.provider_env,
            **extra,
        }

    async def start_gateway(self, role: str, env: Mapping[str, str] | None = None) -> Child:
        """`flick run` on host `role`, its Telegram the lab's hub."""
        return await self.hosts.spawn(
            role,
            "flick.testing.hosted_gateway",
            env={**self.env(role, TELEGRAM_HUB=self.hub_address), **(env or {})},
        )

    async def start_worker(self, role: str, env: Mapping[str, str] | None = None) -> Child:
        """`flick worker` on host `role`, with the gateways' settings (the workers' half of the
        multi-host test: tests/hosts/test_multi_host.py)."""
        return await self.hosts.spawn(
            role, "flick", "worker", env={**self.env(role), **(env or {})}, with_stderr=True
        )


async def ask_for_a_video(hub: TelegramHub, user: RawUser, style: str = "romantic") -> int:
    """/create, consent (when asked), a style and two photos, as `user` would, through the
    hub; each step answered before the next. The generation itself is not waited for.
    Returns how many updates the user sent (what the journal of handled updates will hold)."""
    (asked,) = await hub.exchange(user, hub.command(user, "create"))
    consent = any(data == "consent" for _, data in hub.buttons(asked))
    if consent:
        await hub.exchange(user, hub.callback(user, "consent"))
    await hub.exchange(user, hub.callback(user, f"style:{style}"))
    await hub.exchange(user, hub.photo(user, make_jpeg("red")))
    await hub.push(hub.photo(user, make_jpeg("blue")))
    return 5 if consent else 4


@dataclass(frozen=True)
class Invoice:
    """An invoice the bot sent a user (`buy`)."""

    user: RawUser
    payload: str  # the order the bot stored
    stars: int  # the price on the invoice, as Telegram shows it
    credits: int  # what the order buys

    @property
    def charge(self) -> str:
        """The Telegram charge id of the user's payment (one per user, in these tests)."""
        return f"stx-{self.user.id}"


async def buy(
    hub: TelegramHub, sql: asyncpg.Pool, user: RawUser, offer: Any | None = None
) -> Invoice:
    """A package's button (under `offer`, the bot's message offering them; by default the one
    /buy brings), as `user` would, through the hub; the invoice the bot sent, its price as
    Telegram shows it and its payload the order the bot stored."""
    if offer is None:
        (offer,) = await hub.exchange(user, hub.command(user, "buy"))
    data = next(d for _, d in hub.buttons(offer) if d.startswith("buy:"))
    (sent,) = await hub.exchange(user, hub.callback(user, data, message_id=offer.id))
    assert isinstance(sent.media, raw.types.MessageMediaInvoice)
    assert sent.media.currency == "XTR"
    # Telegram keeps the payload, not the chat: the bot's own order row names it.
    order = await sql.fetchrow(
        "SELECT id, stars, package_credits FROM orders WHERE \"user\" = $1 AND status = 'pending'",
        user.id,
    )
    assert order["stars"] == sent.media.total_amount
    return Invoice(user, f"order:{order['id']}", sent.media.total_amount, order["package_credits"])


def pre_checkout(hub: TelegramHub, invoice: Invoice, *, stars: int | None = None) -> Incoming:
    """The user's pre-checkout query for the invoice (at its price unless `stars` says)."""
    return hub.pre_checkout(
        invoice.user,
        payload=invoice.payload,
        total_amount=invoice.stars if stars is None else stars,
    )


def paid(hub: TelegramHub, invoice: Invoice) -> Incoming:
    """The payment's service message: Telegram charged what the invoice states."""
    return hub.payment(
        invoice.user, payload=invoice.payload, total_amount=invoice.stars, charge_id=invoice.charge
    )


def query_id(incoming: Incoming) -> int:
    return int(incoming.update.query_id)


async def writes_waiting(sql: asyncpg.Pool, table: str) -> list[int]:
    """The backends whose statement on `table` waits for a lock (one a test holds, to stop a
    gateway between two steps and SIGKILL it there)."""
    pids: list[int] = await sql.fetchval(
        "SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%' "
        "AND pid <> pg_backend_pid()",
        table,
    )
    return pids


def replies(children: Sequence[Child], user: RawUser) -> int:
    """Texts the bot sent `user` in answer to an update, from every gateway: not a generation's
    progress message, which a gateway that takes over starts afresh when the killed one sent it
    but died before it saved its id (flick.testing.hosted_gateway tells them apart)."""
    sent = f"telegram: sent to {user.id}; reply"
    return sum(1 for c in children for ln in c.lines if sent in ln)
