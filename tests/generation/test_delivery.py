"""Delivering a finished video: downloaded once to a temporary file, then stored in S3 and sent to
Telegram at the same time from that file; the generation is done once both are, and the file is
gone in every outcome.

The engine's storage here talks to SeaweedFS through `S3Proxy`, a TCP proxy that passes
everything through unless told to drop (or hold) the requests that store a video.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest_asyncio
from loguru import logger

from flick.embedded import EmbeddedSeaweed
from flick.media import VideoMeta
from flick.ports import Keyboard, RecipientGone
from flick.storage import S3Storage
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate, Fault, sample_mp4
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import EngineFactory, HarnessFactory
from flick.testing.memory import RecordingOutbox

UID = 7401
MiB = 1024 * 1024


# ---- S3 behind a proxy that can fail ----------------------------------------------------------
class S3Proxy:
    """TCP between the engine and SeaweedFS. `drop = n`: the next n connections that send a
    video's PUT are cut (a network failure). `gate.clear()`: such requests wait until it is set."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.marker = b"\x00"  # set to b"PUT /{bucket}/videos/" once the bucket is known
        self.drop = 0
        self.dropped = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = asyncio.Event()  # a video's PUT is waiting at the closed gate
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def __aenter__(self) -> S3Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.gate.set()
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}
        back = asyncio.ensure_future(_pipe(up_reader, writer))
        try:
            while chunk := await reader.read(256 * 1024):
                if self.marker in chunk:
                    if self.drop > 0:
                        self.drop -= 1
                        self.dropped += 1
                        return
                    if not self.gate.is_set():
                        self.held.set()
                        await self.gate.wait()
                up_writer.write(chunk)
                await up_writer.drain()
        except OSError:
            pass
        finally:
            back.cancel()
            for w in (writer, up_writer):
                w.transport.abort()
                self._open.discard(w)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(256 * 1024):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


@pytest_asyncio.fixture
async def proxy(seaweed: EmbeddedSeaweed) -> AsyncIterator[S3Proxy]:
    async with S3Proxy(seaweed.endpoint) as running:
        yield running


@pytest_asyncio.fixture
async def storage(seaweed: EmbeddedSeaweed, proxy: S3Proxy) -> AsyncIterator[S3Storage]:
    """The engine's storage (this module's tests only): a fresh bucket, through the proxy."""
    bucket = f"delivery-{secrets.token_hex(6)}"
    proxy.marker = f"PUT /{bucket}/videos/".encode()
    async with S3Storage(proxy.endpoint, seaweed.access_key, seaweed.secret_key, bucket) as s:
        yield s


# ---- outboxes ----------------------------------------------------------------------------------
class HeldVideoOutbox(RecordingOutbox):
    """Telegram takes the video only once `release` is set (forever, unless a test sets it)."""

    def __init__(self) -> None:
        super().__init__()
        self.uploading = asyncio.Event()
        self.release = asyncio.Event()
        self.local_paths: list[Path | None] = []
        self.file_existed: list[bool] = []

    async def send_video(
        self,
        chat_id: int,
        storage_key: str,
        caption: str,
        keyboard: Keyboard | None = None,
        file_id: str | None = None,
        *,
        local_path: Path | None = None,
        meta: VideoMeta | None = None,
    ) -> str:
        self.local_paths.append(local_path)
        self.file_existed.append(await _exists(local_path))
        self.uploading.set()
        await self.release.wait()
        return await super().send_video(
            chat_id, storage_key, caption, keyboard, file_id, local_path=local_path, meta=meta
        )


class FailingOutbox(RecordingOutbox):
    """Telegram refuses the video: the user is gone, or the upload fails every time."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.attempts = 0

    async def send_video(
        self,
        chat_id: int,
        storage_key: str,
        caption: str,
        keyboard: Keyboard | None = None,
        file_id: str | None = None,
        *,
        local_path: Path | None = None,
        meta: VideoMeta | None = None,
    ) -> str:
        self.attempts += 1
        assert await _exists(local_path)
        raise self.error


# ---- helpers -----------------------------------------------------------------------------------
async def _exists(path: Path | None) -> bool:
    return path is not None and await asyncio.to_thread(path.exists)


def leftovers(h: Any) -> list[Path]:
    """Temporary video files left in the engine's data directory."""
    tmp = Path(h.settings.data_dir) / "tmp"
    return sorted(tmp.glob("flick-video-*")) if tmp.exists() else []


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def large_output(n_bytes: int) -> bytes:
    """What the Replicate fake sends for Fault.output_large(n_bytes): an MP4 head, then zeros."""
    head = sample_mp4()[:n_bytes]
    return head + bytes(n_bytes - len(head))


async def stored(storage: S3Storage, key: str | None) -> bytes | None:
    if key is None:
        return None
    try:
        return await storage.get(key)
    except KeyError:
        return None


# ---- tests -------------------------------------------------------------------------------------
async def test_the_video_is_stored_and_sent_from_one_local_copy(
    harness: HarnessFactory, gen: GenerationTools, fake_replicate: FakeReplicate, storage: S3Storage
) -> None:
    size = 12 * MiB + 12345  # S3 takes it in multipart parts
    fake_replicate.script("output", Fault.output_large(size))
    h = await harness()
    await h.make_video(UID)

    row = await gen.generation(await gen.generation_id(UID))
    assert (row["status"], row["refunded"]) == ("done", False)
    (sent,) = gen.videos(h, UID)
    assert sent.extra["key"] == row["video_key"]
    assert row["video_file_id"] == f"video-{row['video_key']}"
    # Telegram got the bytes from the local copy, S3 holds the same bytes: the provider's.
    expected = sha256(large_output(size))
    assert sent.extra["sha256"] == expected
    assert sha256(await storage.get(row["video_key"])) == expected
    assert leftovers(h) == []
    assert await h.balance(UID) == 0
    assert fake_replicate.predictions_created == 1


async def test_the_generation_is_done_only_once_s3_holds_the_video(
    harness: HarnessFactory, gen: GenerationTools, storage: S3Storage, proxy: S3Proxy
) -> None:
    proxy.gate.clear()  # S3 takes the video only when the test says so
    h = await harness()
    gen_id = await gen.start_generation(h, UID)
    await asyncio.wait_for(proxy.held.wait(), 20)

    async def sent() -> bool:
        return bool(gen.videos(h, UID))

    await gen.wait_for(sent, "the video reached Telegram")
    # The user has it; our storage does not yet: the row says so.
    row = await gen.generation(gen_id)
    assert (row["status"], row["video_key"]) == ("delivering", None)
    assert leftovers(h) != []  # S3 still reads it

    proxy.gate.set()
    await h.settle()
    row = await gen.generation(gen_id)
    assert row["status"] == "done" and row["video_key"] is not None
    assert sha256(await storage.get(row["video_key"])) == gen.videos(h, UID)[0].extra["sha256"]
    assert leftovers(h) == []


async def test_a_blocked_user_s_video_is_stored_all_the_same(
    harness: HarnessFactory, gen: GenerationTools, storage: S3Storage
) -> None:
    outbox = FailingOutbox(RecipientGone(str(UID)))
    h = await harness(outbox=outbox)
    await h.make_video(UID)

    gen_id = await gen.generation_id(UID)
    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"], row["video_file_id"]) == ("done", False, None)
    assert await stored(storage, row["video_key"]) == sample_mp4()
    assert await gen.pool().fetchval("SELECT blocked FROM users WHERE telegram_id = $1", UID)
    assert outbox.attempts == 1
    assert await gen.ledger(UID) == [("free", 1, 1, None), ("generation", -1, 0, gen_id)]
    assert leftovers(h) == []


async def test_telegram_failing_refunds_keeps_the_stored_copy_and_no_file(
    harness: HarnessFactory, gen: GenerationTools, storage: S3Storage
) -> None:
    outbox = FailingOutbox(ConnectionResetError("Telegram went away"))
    h = await harness(outbox=outbox, pipeline=replace(gen.FAST, deliver_budget=2.0))
    await h.make_video(UID)

    gen_id = await gen.generation_id(UID)
    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"], row["error_class"]) == ("failed", True, "timeout")
    assert outbox.attempts >= 1
    # The video was made and paid for: our copy is kept even though Telegram never took it.
    assert await stored(storage, row["video_key"]) == sample_mp4()
    assert await h.balance(UID) == 1
    assert leftovers(h) == []


async def test_cancel_while_both_uploads_run_is_too_late_and_the_video_arrives(
    harness: HarnessFactory, gen: GenerationTools, storage: S3Storage, proxy: S3Proxy
) -> None:
    """The point of no return: once the video is being sent, /cancel refunds nothing (the user
    is told so), and the generation ends delivered — never both delivered and refunded."""
    proxy.gate.clear()
    h = await harness(outbox=HeldVideoOutbox())
    outbox = h.outbox
    assert isinstance(outbox, HeldVideoOutbox)
    gen_id = await gen.start_generation(h, UID)
    await asyncio.wait_for(outbox.uploading.wait(), 20)
    await asyncio.wait_for(proxy.held.wait(), 20)
    # Both uploads are under way, from the one local file.
    assert outbox.file_existed == [True]
    (local,) = leftovers(h)
    assert outbox.local_paths == [local]

    await h.command(UID, "cancel")
    await h.settle(generations=False)
    assert gen.sent_texts(h, UID)[-1] == gen.t("en", "cancel_too_late")

    proxy.gate.set()
    outbox.release.set()
    await h.settle()
    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"]) == ("done", False)
    assert await stored(storage, row["video_key"]) == sample_mp4()
    assert await h.balance(UID) == 0
    assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation"]
    assert len(gen.videos(h, UID)) == 1
    assert leftovers(h) == [] and not local.exists()


async def test_a_too_large_video_is_refused_with_a_refund_and_leaves_no_file(
    harness: HarnessFactory, gen: GenerationTools, fake_replicate: FakeReplicate, storage: S3Storage
) -> None:
    fake_replicate.script("output", Fault.output_large(300_000, chunked=True))
    h = await harness(pipeline=replace(gen.FAST, max_video_bytes=100_000))
    await h.make_video(UID)

    gen_id = await gen.generation_id(UID)
    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"], row["error_class"]) == (
        "failed",
        True,
        "video_too_large",
    )
    assert row["video_key"] is None
    assert gen.videos(h, UID) == []
    assert await h.balance(UID) == 1
    assert leftovers(h) == []


async def test_s3_failing_during_the_upload_is_retried(
    harness: HarnessFactory, gen: GenerationTools, storage: S3Storage, proxy: S3Proxy
) -> None:
    # More cuts than aiohttp retries on its own for a reused connection: Flick's retry must act.
    proxy.drop = 3
    retries: list[str] = []
    sink = logger.add(lambda m: retries.append(m.record["message"]), level="INFO")
    try:
        h = await harness(pipeline=replace(gen.FAST, deliver_budget=60.0))
        await h.make_video(UID)
    finally:
        logger.remove(sink)

    gen_id = await gen.generation_id(UID)
    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"]) == ("done", False)
    assert proxy.dropped == 3
    assert [m for m in retries if m.startswith(f"store video (generation {gen_id}) failed")]
    assert await storage.get(row["video_key"]) == sample_mp4()
    (sent,) = gen.videos(h, UID)
    assert sent.extra["sha256"] == sha256(sample_mp4())
    assert leftovers(h) == []


async def test_a_resumed_generation_whose_video_is_stored_is_sent_from_storage(
    engine: EngineFactory,
    gen: GenerationTools,
    storage: S3Storage,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    await storage.put("warm-up", b"warm", "text/plain")
    async with engine(outbox=HeldVideoOutbox()) as first:
        outbox = first.outbox
        assert isinstance(outbox, HeldVideoOutbox)
        gen_id = await gen.start_generation(first, UID)
        await asyncio.wait_for(outbox.uploading.wait(), 20)

        async def in_storage() -> bool:
            return (await gen.generation(gen_id))["video_key"] is not None

        await gen.wait_for(in_storage, "the video reached S3")
    # Stopped while Telegram was still uploading: parked with the video in our storage.
    parked = await gen.generation(gen_id)
    assert (parked["status"], parked["refunded"]) == ("delivering", False)
    assert leftovers(first) == []

    async with engine(fresh=False) as second:

        async def delivered() -> bool:
            return bool(gen.videos(second, UID))

        await gen.wait_for(delivered, "the resumed generation was delivered")
        await second.settle()
        (sent,) = gen.videos(second, UID)
        # From storage (the outbox read no local file), under the key stored the first time.
        assert sent.extra["key"] == parked["video_key"] and "sha256" not in sent.extra
        row = await gen.generation(gen_id)
        assert (row["status"], row["video_key"]) == ("done", parked["video_key"])
        assert await storage.get(row["video_key"]) == sample_mp4()
        assert fake_replicate.predictions_created == 1
        assert len(fake_openai.calls("images.edit")) == 1
        assert await second.balance(UID) == 0
        assert leftovers(second) == []
