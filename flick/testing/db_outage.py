"""A TCP proxy in front of PostgreSQL that can take the database away: outages on demand.

Flick is pointed at the proxy instead of the server (`proxy.url_for(database_url)`); the proxy
forwards bytes both ways, unchanged. `proxy.silence()` stops every byte while keeping the
connections open (a cut cable: nothing tells either end). `await proxy.cut()` resets every
open connection at once and resets each new one as soon as it is accepted, which is what a
client sees when the database restarts, fails over or the network drops: pooled connections die
in the middle of a query and reconnects fail until `proxy.restore()`. The server itself is never
touched, so nothing is lost and other clients (a test's own checks) keep using it directly.

    async with DbProxy.for_url(url) as proxy:
        pool = await asyncpg.create_pool(proxy.url_for(url))
        async with proxy.outage(3.0):
            ...  # every query fails with a connection error
        ...  # works again (new connections)

Upstream is TCP (`host`, `port`) or, as libpq spells it, a unix socket directory as `host`
(the embedded PostgreSQL listens on one): `<dir>/.s.PGSQL.<port>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_CHUNK = 64 * 1024
DEFAULT_PORT = 5432


@dataclass
class ProxyStats:
    accepted: int = 0  # connections forwarded to the server
    refused: int = 0  # connections reset at once because the database was "down"
    cut: int = 0  # open connections reset by cut()
    failed: int = 0  # connections the server itself did not take
    outages: int = 0


class _Link:
    """One client connection and its twin to the server."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server

    def reset(self) -> None:
        for writer in (self.client, self.server):
            _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, not an orderly FIN: no goodbye, as when the far end vanishes."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class DbProxy:
    def __init__(self, upstream_host: str, upstream_port: int = DEFAULT_PORT, *,
                 listen_host: str = "127.0.0.1") -> None:  # fmt: skip
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._down = False
        self._flowing = asyncio.Event()  # cleared by silence(): bytes wait, connections stay
        self._flowing.set()
        self._links: set[_Link] = set()
        # One task per accepted connection (its two pumps run inside it): cut() and close()
        # cancel them and wait, so an outage or a stop leaves nothing running behind it.
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def for_url(cls, database_url: str, *, listen_host: str = "127.0.0.1") -> DbProxy:
        """A proxy in front of the server a postgresql:// URL names."""
        host, port = upstream_of(database_url)
        return cls(host, port, listen_host=listen_host)

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accepted, self.listen_host, 0)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self._drop_all()
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("DbProxy is not started")
        return self._port

    @property
    def is_down(self) -> bool:
        return self._down

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def url_for(self, database_url: str) -> str:
        """`database_url` with its server replaced by this proxy (user, password, database and
        other options kept; a unix socket `host=`/`port=` option is dropped)."""
        parts = urlsplit(database_url)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@" if userinfo else ""
        netloc += f"{self.listen_host}:{self.port}"
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k not in ("host", "port")]  # fmt: skip
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))

    # ---- outages ---------------------------------------------------------------------------
    async def cut(self) -> None:
        """The database goes away: every open connection is reset now, new ones are reset as
        soon as they arrive, until restore()."""
        if not self._down:
            self.stats.outages += 1
        self._down = True
        self.stats.cut += len(self._links)
        await self._drop_all()

    def silence(self) -> None:
        """The network goes quiet: open connections stay open, but no byte passes either way
        (no FIN, no reset), as when a cable is cut between two hosts; until speak()."""
        self._flowing.clear()

    def speak(self) -> None:
        self._flowing.set()

    def restore(self) -> None:
        """The database is back: new connections reach it again (cut ones stay dead)."""
        self._down = False

    @contextlib.asynccontextmanager
    async def outage(self, seconds: float) -> AsyncIterator[None]:
        """The database is away for `seconds` from now; the block runs meanwhile. Leaving the
        block early waits for the rest of the outage; a longer block sees the database come
        back at the deadline, as a real outage does not wait for anyone."""
        loop = asyncio.get_running_loop()
        await self.cut()
        deadline = loop.time() + seconds
        timer = loop.call_at(deadline, self.restore)
        try:
            yield
            await asyncio.sleep(max(0.0, deadline - loop.time()))
        finally:
            timer.cancel()
            self.restore()

    # ---- forwarding ------------------------------------------------------------------------
    async def _drop_all(self) -> None:
        for link in list(self._links):
            link.reset()
        self._links.clear()
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, and a task of our own per connection: cut() cancels these, and the
        # task start_server makes for a coroutine callback reports a cancellation as an error.
        self._track(asyncio.get_running_loop().create_task(self._serve(reader, writer)))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down or self._server is None:
            self.stats.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await self._connect_upstream()
        except OSError:
            self.stats.failed += 1
            _reset(writer)
            return
        except asyncio.CancelledError:
            _reset(writer)
            raise
        if self._down or self._server is None:  # cut while connecting
            self.stats.refused += 1
            _reset(up_writer)
            _reset(writer)
            return
        self.stats.accepted += 1
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                _pump(reader, up_writer, self._flowing), _pump(up_reader, writer, self._flowing)
            )
        finally:
            self._links.discard(link)
            link.reset()

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream_host.startswith("/"):
            path = f"{self.upstream_host}/.s.PGSQL.{self.upstream_port}"
            return await asyncio.open_unix_connection(path, limit=_CHUNK)
        return await asyncio.open_connection(self.upstream_host, self.upstream_port, limit=_CHUNK)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    """Bytes one way until either side closes; then the whole link goes (gather ends it)."""
    try:
        while data := await reader.read(_CHUNK):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        # One direction ended: PostgreSQL has no use for a half-open connection.
        writer.transport.abort()


def upstream_of(database_url: str) -> tuple[str, int]:
    """(host, port) of the server a postgresql:// URL names; host may be a socket directory."""
    parts = urlsplit(database_url)
    options = dict(parse_qsl(parts.query))
    host = options.get("host") or parts.hostname or "127.0.0.1"
    port = int(options.get("port") or parts.port or DEFAULT_PORT)
    return host, port
