"""What the Storage port promises, kept by every implementation: the in-memory one the engine
tests use (flick.testing.memory) and S3 on the real SeaweedFS (flick.storage).

Only what the product calls is on the port (put, put_file, get, stream, size, keys, presign,
delete: the last three for the photo sweeper and the buttons under a video); S3's own
behaviour (streaming memory, multipart sizes, refusals) is in tests/foundation/test_storage.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flick.ports import Storage
from flick.testing.memory import MemoryStorage


@pytest.fixture(params=["memory", "s3"])
def port(request: pytest.FixtureRequest) -> Storage:
    """Each implementation in turn; S3 is a fresh bucket (the `storage` fixture)."""
    if request.param == "memory":
        return MemoryStorage()
    s3: Storage = request.getfixturevalue("storage")
    return s3


async def test_what_is_put_is_got_back_and_a_second_put_replaces_it(port: Storage) -> None:
    await port.put("photos/1/a.jpg", b"first", "image/jpeg")
    assert await port.get("photos/1/a.jpg") == b"first"
    await port.put("photos/1/a.jpg", b"second", "image/jpeg")
    assert await port.get("photos/1/a.jpg") == b"second"
    await port.put("photos/1/empty.jpg", b"", "image/jpeg")
    assert await port.get("photos/1/empty.jpg") == b""


async def test_a_missing_key_is_a_key_error(port: Storage) -> None:
    await port.put("photos/1/a.jpg", b"x", "image/jpeg")
    with pytest.raises(KeyError):
        await port.get("photos/1/b.jpg")
    with pytest.raises(KeyError):
        [chunk async for chunk in port.stream("photos/1/b.jpg")]


async def test_stream_gives_the_same_bytes_in_chunks(port: Storage) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    await port.put("videos/1/v.mp4", data, "video/mp4")
    chunks = [chunk async for chunk in port.stream("videos/1/v.mp4")]
    assert len(chunks) > 1 and all(chunks)
    assert b"".join(chunks) == data


@pytest.mark.parametrize("size", [0, 1000, 6 * 1024 * 1024 + 3], ids=["empty", "small", "parts"])
async def test_put_file_stores_the_file_and_returns_its_size(
    port: Storage, tmp_path: Path, size: int
) -> None:
    path = tmp_path / "video.mp4"
    path.write_bytes(os.urandom(size))
    assert await port.put_file("videos/1/f.mp4", path, "video/mp4") == size
    assert await port.get("videos/1/f.mp4") == path.read_bytes()
    assert path.exists()  # the caller's file stays theirs


async def test_no_public_address_means_no_links(port: Storage) -> None:
    await port.put("videos/1/v.mp4", b"v", "video/mp4")
    assert await port.presign("videos/1/v.mp4") is None


async def test_size_is_the_stored_length_and_a_missing_key_is_a_key_error(port: Storage) -> None:
    await port.put("photos/1/a.jpg", b"12345", "image/jpeg")
    assert await port.size("photos/1/a.jpg") == 5
    with pytest.raises(KeyError):
        await port.size("photos/1/gone.jpg")


async def test_keys_lists_exactly_what_is_under_the_prefix(port: Storage) -> None:
    for key in ("photos/1/a.jpg", "photos/1/b.jpg", "photos/2/a.jpg", "videos/1/v.mp4"):
        await port.put(key, b"x", "application/octet-stream")
    assert sorted([key async for key in port.keys("photos/1/")]) == [
        "photos/1/a.jpg",
        "photos/1/b.jpg",
    ]
    assert sorted([key async for key in port.keys("photos/")]) == [
        "photos/1/a.jpg",
        "photos/1/b.jpg",
        "photos/2/a.jpg",
    ]
    assert [key async for key in port.keys("nothing/")] == []


async def test_a_deleted_key_is_gone_and_deleting_it_again_is_no_error(port: Storage) -> None:
    await port.put("photos/1/a.jpg", b"x", "image/jpeg")
    await port.put("photos/1/b.jpg", b"y", "image/jpeg")
    await port.delete("photos/1/a.jpg")
    with pytest.raises(KeyError):
        await port.get("photos/1/a.jpg")
    assert [key async for key in port.keys("photos/1/")] == ["photos/1/b.jpg"]
    await port.delete("photos/1/a.jpg")
