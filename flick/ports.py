"""The engine's ports: what it needs from Telegram, storage and the AI providers.

Each is a `Protocol`; production implementations live in `flick/telegram`, `flick/storage.py` and
`flick/pipeline`, and the tests use in-memory or local ones (`flick/testing`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from flick.events import PhotoRef
from flick.media import SampleKind, VideoMeta


@dataclass(frozen=True, slots=True)
class Button:
    text: str
    data: str | None = None  # callback data (at most 64 bytes)
    url: str | None = None


Keyboard = tuple[tuple[Button, ...], ...]


@dataclass(frozen=True, slots=True)
class AlbumItem:
    """One file of an album the bot sends (a style's sample): shown as `kind` says."""

    path: Path
    kind: SampleKind
    caption: str


class RecipientGone(Exception):  # noqa: N818 - a condition, not a failure
    """The user blocked the bot or deleted their account: stop messaging them."""


class RecipientUnreachable(Exception):  # noqa: N818 - a condition, not a failure
    """Telegram's client cannot address this chat right now (`PEER_ID_INVALID`): it has no access
    hash for the user, e.g. after its session file was lost, until the user writes again.

    Not a block: the user is not marked blocked, and a send may be retried later. Deliberately
    not a subclass of RecipientGone, so no `except RecipientGone` takes it for one.
    """


class Outbox(Protocol):
    async def send_text(self, chat_id: int, text: str, keyboard: Keyboard | None = None) -> int:
        """Send a message; returns its message id."""

    async def edit_text(
        self, chat_id: int, message_id: int, text: str, keyboard: Keyboard | None = None
    ) -> None: ...

    async def answer_button(
        self, callback_id: str, text: str | None = None, alert: bool = False
    ) -> None: ...

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
        """Send a stored video (or re-send by Telegram `file_id`); returns its Telegram file_id.

        `local_path`: a local copy of the video to upload instead of reading the stored object
        (it may not be in storage yet); the caller keeps and deletes the file.
        `meta`: the video's size, length and thumbnail; None: the outbox probes the file itself
        (flick.media.MediaError when it is not a readable video).
        """

    async def send_album(self, chat_id: int, items: Sequence[AlbumItem]) -> None:
        """Send local files as one album (one message for a single item), each uploaded once
        per process and re-sent by its Telegram file id afterwards."""

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
    ) -> int: ...

    async def answer_pre_checkout(
        self, query_id: str, ok: bool, error: str | None = None
    ) -> None: ...

    def download(self, photo: PhotoRef) -> AsyncIterator[bytes]:
        """Stream the bytes of a photo the user sent."""

    async def refund_star_payment(self, user_id: int, charge_id: str) -> bool:
        """Refund a Stars charge. False when Telegram says it was already refunded."""

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
        """An invoice link (t.me/$…); with `subscription_period`, a Star subscription's."""

    async def edit_subscription(self, user_id: int, charge_id: str, *, canceled: bool) -> None:
        """Turn a user's Star subscription's renewal off (`canceled`) or back on; `charge_id` is
        its first payment's. Raises TelegramRefused when Telegram refuses."""


class Storage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def put_file(self, key: str, path: Path, content_type: str) -> int:
        """Store a local file, streamed in parts (never whole in memory); returns its size."""

    async def get(self, key: str) -> bytes: ...

    def stream(self, key: str) -> AsyncIterator[bytes]: ...

    async def size(self, key: str) -> int: ...

    def keys(self, prefix: str) -> AsyncIterator[str]:
        """Every stored key that starts with `prefix`."""

    async def presign(self, key: str) -> str | None:
        """A time-limited public link, or None where no public address is configured."""

    async def delete(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ComposedImage:
    data: bytes
    content_type: str = "image/png"
    cost: Mapping[str, Any] = field(default_factory=dict)


# "aborted": terminated before it ran (e.g. its deadline passed while queued), so never billed.
PredictionStatus = Literal["starting", "processing", "succeeded", "failed", "canceled", "aborted"]


@dataclass(frozen=True, slots=True)
class Prediction:
    id: str
    status: PredictionStatus
    output_url: str | None = None
    error: str | None = None
    predict_time: float | None = None


class ImageProvider(Protocol):
    name: str

    async def compose(self, photos: Sequence[bytes], prompt: str, style: str) -> ComposedImage:
        """One picture of the people in `photos`, in the style the prompt describes.

        Raises TransientError or FinalError (flick.errors).
        """

    async def check(self) -> None:
        """A cheap authenticated call; raises on bad credentials (for `flick doctor`)."""


class FaceDetector(Protocol):
    """Finds faces in a photo, with a model that ships inside its package (never downloaded)."""

    name: str

    def faces(self, jpeg: bytes) -> list[float]:
        """The size of each face found, as a share of the photo's shorter side, largest first.

        Blocking (CPU work): call it in a thread, never on the event loop.
        """


class VideoProvider(Protocol):
    name: str

    async def start(
        self,
        image: bytes | None,
        content_type: str,
        inputs: Mapping[str, Any],
        *,
        model: str | None = None,
    ) -> str:
        """Create a prediction; returns its id as soon as the provider has one.

        `image` goes in the model's `image` input; inputs given as bytes (or a list of bytes) are
        pictures too, sent the same way (a direct route's photos). `model`: another model of the
        provider than its own (a style's), None for its own.
        """

    async def find_accepted(
        self,
        image: bytes | None,
        content_type: str,
        inputs: Mapping[str, Any],
        *,
        since: datetime,
        skip: Collection[str] = (),
        model: str | None = None,
    ) -> str | None:
        """The id of a prediction the provider already accepted for exactly this input (what
        `start` would send), created around `since` (when a create was last asked for), or None.

        For a create whose answer was lost (a kill, a timeout): adopt that prediction rather than
        pay for a second one. Canceled predictions do not count, nor those whose id is in `skip`;
        when several match, one is returned and the others are cancelled.
        """

    async def poll(self, prediction_id: str) -> Prediction: ...

    def open_output(self, prediction: Prediction) -> AsyncIterator[bytes]:
        """Stream the finished video. Raises FinalError when it is missing or not a video."""

    async def cancel(self, prediction_id: str) -> None: ...

    async def check(self) -> None: ...
