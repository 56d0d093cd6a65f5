"""A finished video's way out: provider → local temporary file → our storage and Telegram at once.

The download goes to local disk (fast, so the AI slot is released soon); the S3 copy and the
Telegram upload then run side by side from that file. Disk work stays off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

from loguru import logger

from flick.errors import ServiceError, TransientError
from flick.fsm.generation import GenerationRecord
from flick.models import generations
from flick.models.generations import RefusedTransition
from flick.pipeline.retry import with_retries
from flick.ports import Storage
from flick.private_files import private_dir

#: The ServiceError setting S3Storage names when S3 cannot be reached or failed on its side.
_UNREACHABLE = "S3_ENDPOINT"
_BATCH = 1024 * 1024


async def download(
    chunks: AsyncIterator[bytes], directory: Path | None, max_bytes: int, suffix: str = ".mp4"
) -> Path:
    """Write a stream into a new temporary file; returns its path, the caller deletes it.

    Over `max_bytes`: ValueError. On any failure (cancellation too) the partial file is deleted.
    """
    if directory is not None:
        await asyncio.to_thread(private_dir, directory)  # users' photos and videos
    fd, name = await asyncio.to_thread(
        tempfile.mkstemp, prefix="flick-video-", suffix=suffix, dir=directory
    )
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            written = pending = 0
            batch: list[bytes] = []  # written about 1 MiB at a time: fewer trips to a thread
            async for chunk in chunks:
                written += len(chunk)
                if written > max_bytes:
                    raise ValueError(f"video larger than {max_bytes} bytes")
                batch.append(chunk)
                pending += len(chunk)
                if pending >= _BATCH:
                    await asyncio.to_thread(out.writelines, batch)
                    batch, pending = [], 0
            await asyncio.to_thread(out.writelines, batch)
    except BaseException:
        await discard(path)
        raise
    finally:
        close = getattr(chunks, "aclose", None)  # an abandoned download lets its connection go
        if close is not None:
            await close()
    return path


def remove_leftovers(directory: Path) -> int:
    """Delete the temporary videos a killed process left behind; returns how many.

    Only for a directory this process owns (Flick holds the data dir's lock when it calls this).
    """
    removed = 0
    for pattern in ("flick-video-*", "flick-upload-*"):
        for path in directory.glob(pattern):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


async def discard(path: Path | None) -> None:
    """Delete a temporary file if there is one. The unlink runs in a thread, so it completes
    even when the caller is cancelled meanwhile."""
    if path is not None:
        await asyncio.to_thread(path.unlink, missing_ok=True)


async def store(
    storage: Storage, record: GenerationRecord, key: str, path: Path, budget: float
) -> Exception | None:
    """Copy the local video to storage under `key`, retrying while S3 is unreachable, then record
    the key on the generation row (only once S3 holds the object, and only if no other process
    stored the generation's video first: then the copy is deleted, RefusedTransition returned).

    Returns the failure instead of raising it, so the Telegram upload beside it goes on; a
    cancellation is raised as usual.
    """

    async def put() -> int:
        try:
            return await storage.put_file(key, path, "video/mp4")
        except ServiceError as exc:
            if exc.setting != _UNREACHABLE:  # credentials, bucket: a retry would not help
                raise
            raise TransientError(f"storing the video: {exc}", kind="storage") from exc
        except (OSError, TimeoutError) as exc:
            raise TransientError(f"storing the video: {exc}", kind="storage") from exc

    generation_id = record.id
    try:
        size = await with_retries(
            put, budget=budget, what=f"store video (generation {generation_id})"
        )
        await generations.save_video_key(record, key)
    except RefusedTransition as exc:  # another process's copy is the generation's: not ours
        with contextlib.suppress(Exception):
            await storage.delete(key)
        return exc
    except Exception as exc:  # noqa: BLE001 - handed to the caller, who decides
        return exc
    logger.debug("generation {}: {} bytes stored as {}", generation_id, size, key)
    return None


async def send_while_storing(
    sending: Awaitable[str | None],
    storage: Storage,
    record: GenerationRecord,
    key: str,
    path: Path,
    budget: float,
) -> str | None:
    """Await `sending` (the Telegram upload from `path`) while `path` is stored under `key`;
    returns what `sending` returns (the file id; None when the user is gone) once both are done.

    A cancellation (a /cancel, or a stop: the next start downloads the video again) cancels the
    copy. Telegram failing does not: the video is made and paid for, so it is kept, and the
    failure is raised once the copy is done. The copy failing after Telegram took the video is
    logged, not raised: the user has their video, only our copy (history link, re-sends) is
    missing.
    """
    generation_id = record.id
    storing = asyncio.ensure_future(store(storage, record, key, path, budget))
    try:
        file_id = await sending
    except Exception:
        _log_failure(await storing, generation_id, "not delivered")
        raise
    except BaseException:
        storing.cancel()
        await asyncio.gather(storing, return_exceptions=True)
        raise
    failure = await storing  # a blocked user's video is stored all the same
    if failure is not None and file_id is None:  # neither the user nor our storage has it
        raise failure
    _log_failure(failure, generation_id, "delivered")
    return file_id


def _log_failure(failure: Exception | None, generation_id: int, delivered: str) -> None:
    if failure is not None:
        logger.opt(exception=failure).error(
            "generation {}: video {} and not stored: {}", generation_id, delivered, failure
        )
