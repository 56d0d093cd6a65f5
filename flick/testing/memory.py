"""In-memory implementations of the ports, for engine tests and benchmarks.

They are real implementations of the Protocols in `flick.ports`, not mocks: the outbox records what
the engine sent so a test can read the conversation back.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flick.events import PhotoRef
from flick.media import VideoMeta
from flick.ports import AlbumItem, Keyboard, RecipientGone


@dataclass
class Sent:
    """One call the engine made on the outbox."""

    method: str
    chat_id: int | None
    text: str = ""
    keyboard: Keyboard | None = None
    message_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def buttons(self) -> list[tuple[str, str | None]]:
        return [(b.text, b.data) for row in self.keyboard or () for b in row]


class MemoryStorage:
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = (bytes(data), content_type)

    async def put_file(self, key: str, path: Path, content_type: str) -> int:
        data = await asyncio.to_thread(path.read_bytes)  # it keeps objects in memory anyway
        await self.put(key, data, content_type)
        return len(data)

    async def get(self, key: str) -> bytes:
        return self.objects[key][0]

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        data = self.objects[key][0]
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    async def size(self, key: str) -> int:
        return len(self.objects[key][0])

    async def keys(self, prefix: str) -> AsyncIterator[str]:
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield key

    async def presign(self, key: str) -> str | None:
        return None

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)


class RecordingOutbox:
    """Records every call; photos are served from `files` (file_id -> bytes)."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.files: dict[str, bytes] = {}
        self.blocked: set[int] = set()
        self.refunded: set[str] = set()
        self._ids = itertools.count(1000)

    def _record(self, sent: Sent) -> int:
        if sent.chat_id is not None and sent.chat_id in self.blocked:
            raise RecipientGone(str(sent.chat_id))
        sent.message_id = next(self._ids)
        self.sent.append(sent)
        return sent.message_id

    def to(self, chat_id: int) -> list[Sent]:
        return [s for s in self.sent if s.chat_id == chat_id]

    async def send_text(self, chat_id: int, text: str, keyboard: Keyboard | None = None) -> int:
        return self._record(Sent("send_text", chat_id, text, keyboard))

    async def edit_text(
        self, chat_id: int, message_id: int, text: str, keyboard: Keyboard | None = None
    ) -> None:
        self._record(Sent("edit_text", chat_id, text, keyboard, extra={"edits": message_id}))

    async def answer_button(
        self, callback_id: str, text: str | None = None, alert: bool = False
    ) -> None:
        self._record(Sent("answer_button", None, text or "", extra={"callback_id": callback_id}))

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
        new_id = file_id or f"video-{storage_key}"
        extra: dict[str, Any] = {"key": storage_key, "file_id": file_id, "meta": meta}
        if local_path is not None and not file_id:  # uploaded from the caller's copy
            extra["sha256"] = await asyncio.to_thread(_sha256, local_path)
        self._record(Sent("send_video", chat_id, caption, keyboard, extra=extra))
        return new_id

    async def send_album(self, chat_id: int, items: Sequence[AlbumItem]) -> None:
        captions = "\n".join(item.caption for item in items)
        paths = [str(item.path) for item in items]
        self._record(Sent("send_album", chat_id, captions, None, extra={"paths": paths}))

    async def send_invoice(
        self,
        chat_id: int,
        *,
        title: str,
        description: str,
        payload: str,
        currency: str,
        amount: int,
        label: str,
    ) -> int:
        return self._record(
            Sent(
                "send_invoice",
                chat_id,
                title,
                extra={
                    "payload": payload,
                    "currency": currency,
                    "amount": amount,
                    "description": description,
                    "label": label,
                },
            )
        )

    async def answer_pre_checkout(self, query_id: str, ok: bool, error: str | None = None) -> None:
        self._record(
            Sent("answer_pre_checkout", None, error or "", extra={"query_id": query_id, "ok": ok})
        )

    async def download(self, photo: PhotoRef) -> AsyncIterator[bytes]:
        data = self.files[photo.file_id]
        for i in range(0, len(data), 32 * 1024):
            yield data[i : i + 32 * 1024]

    async def refund_star_payment(self, user_id: int, charge_id: str) -> bool:
        if charge_id in self.refunded:
            return False
        self.refunded.add(charge_id)
        self._record(Sent("refund_star_payment", user_id, charge_id))
        return True

    async def create_invoice_link(
        self,
        *,
        title: str,
        description: str,
        payload: str,
        currency: str,
        amount: int,
        label: str,
        subscription_period: int | None = None,
    ) -> str:
        extra = {
            "payload": payload,
            "currency": currency,
            "amount": amount,
            "description": description,
            "label": label,
            "subscription_period": subscription_period,
        }
        number = self._record(Sent("create_invoice_link", None, title, extra=extra))
        return f"https://t.me/$invoice{number}"

    async def edit_subscription(self, user_id: int, charge_id: str, *, canceled: bool) -> None:
        extra = {"charge_id": charge_id, "canceled": canceled}
        self._record(Sent("edit_subscription", user_id, charge_id, extra=extra))


class HeldOutbox(RecordingOutbox):
    """The recording outbox, where a test can hold the download of chosen files (a slow network)."""

    def __init__(self) -> None:
        super().__init__()
        self.holds: dict[str, asyncio.Event] = {}

    def hold(self, file_id: str) -> asyncio.Event:
        """Downloads of `file_id` wait until the returned event is set."""
        gate = self.holds[file_id] = asyncio.Event()
        return gate

    async def download(self, photo: PhotoRef) -> AsyncIterator[bytes]:
        gate = self.holds.get(photo.file_id)
        if gate is not None:
            await gate.wait()
        async for chunk in super().download(photo):
            yield chunk


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
