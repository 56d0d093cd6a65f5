"""Albums and uploaded photos as Telegram answers them: `messages.uploadMedia` (a file made
into a photo or document before it is sent), `messages.sendMultiMedia` (one message per item,
sharing a `grouped_id`), and photos sent by the bot by upload or by id."""

from __future__ import annotations

import itertools
from typing import Any, Final

from flick.testing.telegram.file_store import FileStore
from flick.testing.telegram.wire import raw, rpc_error

#: Telegram's limit of items in one album.
MAX_ALBUM: Final = 10
MAX_CAPTION: Final = 1024


class Albums:
    """What the offline Telegram keeps of the bot's own photos, and its album ids."""

    def __init__(self, files: FileStore) -> None:
        self.files = files
        self.photos: dict[int, Any] = {}  # the bot's uploaded photos, by id
        self.photo_data: dict[int, bytes] = {}
        self._grouped = itertools.count(9_000_000_001)

    def uploaded_photo(self, request: Any, media: Any, size: tuple[int, int]) -> Any:
        data = self.files.assembled(request, media.file)
        photo = self.files.add_photo(data, *size)
        self.photos[photo.id], self.photo_data[photo.id] = photo, data
        return photo

    def photo(self, request: Any, media: Any) -> Any:
        found = self.photos.get(media.id.id)
        if found is None or found.access_hash != media.id.access_hash:
            raise rpc_error(request, "MEDIA_EMPTY")
        return found

    def check(self, request: Any) -> int:
        """A new album's grouped id, once the request passes Telegram's checks."""
        items = request.multi_media
        if not items:
            raise rpc_error(request, "MEDIA_EMPTY")
        if len(items) > MAX_ALBUM:
            raise rpc_error(request, "MULTI_MEDIA_TOO_LONG")
        for item in items:
            if len(item.message) > MAX_CAPTION:
                raise rpc_error(request, "MEDIA_CAPTION_TOO_LONG")
            uploaded = raw.types.InputMediaUploadedPhoto | raw.types.InputMediaUploadedDocument
            if isinstance(item.media, uploaded):
                raise rpc_error(request, "MEDIA_INVALID")  # albums take uploaded media by id
        return next(self._grouped)
