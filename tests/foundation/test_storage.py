"""S3Storage against a real SeaweedFS: the Storage port, streaming memory, and clear failures."""

from __future__ import annotations

import json
import os
import socket
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from pydantic import SecretStr

from flick.embedded import EmbeddedSeaweed
from flick.errors import ServiceError
from flick.settings import Settings
from flick.storage import S3Storage, combined_key, photo_key, video_key
from flick.testing.services import make_storage

MiB = 1024 * 1024


async def generated(total: int, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    """`total` bytes made on the fly: the source never holds the object either."""
    block = os.urandom(chunk)
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        yield block[:size]
        sent += size


def test_key_layout() -> None:
    ts = datetime(2026, 11, 25, 10, 30, 0, 123456, tzinfo=UTC)
    assert photo_key(42, ts, "AgAD-x_1") == "photos/42/20261125T103000123_AgAD-x_1.jpg"
    assert combined_key(42, ts, "hug") == "combined/42/20261125T103000123_hug.jpg"
    assert video_key(42, ts, "slow dance") == "videos/42/20261125T103000123_slow_dance.mp4"
    # Other time zones are turned into UTC; path tricks and odd characters are neutralised.
    local = ts.astimezone(timezone(timedelta(hours=3)))
    assert photo_key(7, local, "../../etc/passwd") == "photos/7/20261125T103000123__etc_passwd.jpg"
    assert video_key(7, ts.replace(tzinfo=None), "") == "videos/7/20261125T103000123__.mp4"


async def test_stream_yields_chunks(storage: S3Storage) -> None:
    # The port's promises are in tests/contracts/test_storage_contract.py; this is S3's own.
    await storage.check()
    data = os.urandom(3 * MiB + 17)
    await storage.put("blob", data, "application/octet-stream")
    chunks = [chunk async for chunk in storage.stream("blob")]
    assert len(chunks) > 1
    assert b"".join(chunks) == data


@pytest.mark.parametrize(
    "total",
    [0, 2 * MiB, 5 * MiB, 5 * MiB + 1, 30 * MiB + 17],
    ids=["empty", "small", "one-part", "part-and-a-byte", "large"],
)
async def test_put_file_streams_a_local_file_in_parts(
    storage: S3Storage, tmp_path: Path, total: int
) -> None:
    path = tmp_path / "video.mp4"
    with path.open("wb") as out:
        async for chunk in generated(total, chunk=MiB):
            out.write(chunk)
    tracemalloc.start()
    try:
        size = await storage.put_file("videos/local.mp4", path, "video/mp4")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == total
    assert peak < 20 * MiB, f"peak {peak / MiB:.1f} MiB"  # about three parts, whatever the size
    assert await storage.get("videos/local.mp4") == path.read_bytes()
    assert path.exists()  # the caller's file stays


async def test_presign(seaweed: EmbeddedSeaweed) -> None:
    async with make_storage(seaweed) as private:
        await private.put("k.txt", b"hi", "text/plain")
        assert await private.presign("k.txt") is None  # no public address: no links
    public = f"http://{seaweed.endpoint}"
    async with make_storage(seaweed, public_url=public, presign_seconds=120) as linked:
        await linked.put("k.txt", b"hi", "text/plain")
        url = await linked.presign("k.txt")
        assert url is not None and url.startswith(f"{public}/{linked.bucket}/k.txt?")
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["120"]
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                assert response.status == 200 and await response.read() == b"hi"
            async with http.get(url.split("?")[0]) as response:
                assert response.status == 403  # the bucket itself stays private
    other = make_storage(seaweed, public_url="https://files.example.com")
    link = await other.presign("videos/1/x.mp4")  # signing needs no network
    assert link is not None and link.startswith(f"https://files.example.com/{other.bucket}/")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_endpoint() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServiceError) as caught:
        await S3Storage(endpoint, "ak", "sk", "bucket").start()
    assert caught.value.setting == "S3_ENDPOINT" and endpoint in str(caught.value)


async def test_wrong_credentials_name_the_setting_not_the_secret(seaweed: EmbeddedSeaweed) -> None:
    secret = "Wr0ng-S3cret-" + os.urandom(4).hex()
    for access in (seaweed.access_key, "nobody"):
        bad = S3Storage(seaweed.endpoint, access, secret, "some-bucket")
        with pytest.raises(ServiceError) as caught:
            await bad.start()
        assert "S3_SECRET_KEY" in str(caught.value)
        assert secret not in str(caught.value) and secret not in repr(caught.value)
        assert secret not in repr(bad)


async def test_bad_bucket_name(seaweed: EmbeddedSeaweed) -> None:
    with pytest.raises(ServiceError) as caught:
        await make_storage(seaweed, prefix="Bad_Name").start()
    assert caught.value.setting == "S3_BUCKET"


async def test_public_bucket_is_refused(seaweed: EmbeddedSeaweed) -> None:
    async with make_storage(seaweed) as storage:
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": ["*"]},
                    "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{storage.bucket}/*"],
                }
            ],
        }
        await storage._client.set_bucket_policy(storage.bucket, json.dumps(policy))
        again = make_storage(seaweed)
        again.bucket = storage.bucket
        with pytest.raises(ServiceError) as caught:
            await again.start()
        assert caught.value.setting == "S3_BUCKET" and "anyone" in str(caught.value)
        await storage._client.delete_bucket_policy(storage.bucket)
        async with again:  # private again: accepted
            await again.check()


async def test_from_settings(seaweed: EmbeddedSeaweed) -> None:
    configured = Settings(
        _env_file=None,  # type: ignore[call-arg]
        s3_endpoint=seaweed.endpoint,
        s3_access_key=SecretStr(seaweed.access_key),
        s3_secret_key=SecretStr(seaweed.secret_key),
        s3_bucket="from-settings",
        presign_seconds=600,
    )
    async with S3Storage.from_settings(configured) as storage:
        await storage.put("x", b"y", "text/plain")
        assert await storage.presign("x") is None
    embedded = Settings(_env_file=None, s3_public_url="http://files.example.com")  # type: ignore[call-arg]
    storage = S3Storage.from_settings(
        embedded,
        endpoint=seaweed.endpoint,
        access_key=seaweed.access_key,
        secret_key=seaweed.secret_key,
    )
    async with storage:
        assert storage.bucket == "telegram-flick"
        link = await storage.presign("x")
        assert link is not None and link.startswith("http://files.example.com/telegram-flick/x?")
