"""Files on the offline Telegram: photos and documents users send, parts the bot uploads."""

from __future__ import annotations

import hashlib
import io
import itertools
import time
from typing import Any

from PIL import Image

from flick.testing.telegram.wire import raw, rpc_error

MB = 1024 * 1024
MAX_PART = 512 * 1024

FileKey = tuple[str, int, str]  # ("photo" | "document", media id, size type)


def photo_sizes(length: int, width: int, height: int) -> list[Any]:
    """Sizes like Telegram's: thumbnails "s"/"m"/"x" below the original, then the original as
    a progressive JPEG ("y", or "w" past 1280 px) whose last scan is the whole file."""
    longest = max(width, height)
    sizes: list[Any] = []
    for size_type, side in (("s", 90), ("m", 320), ("x", 800)):
        if longest > side:
            scale = side / longest
            sizes.append(
                raw.types.PhotoSize(
                    type=size_type,
                    w=max(1, round(width * scale)),
                    h=max(1, round(height * scale)),
                    size=max(1, length * side // longest // 4),
                )
            )
    main_type = "y" if longest <= 1280 else "w"
    scans = sorted({max(1, length // 4), max(1, length // 2), max(1, length)})
    sizes.append(raw.types.PhotoSizeProgressive(type=main_type, w=width, h=height, sizes=scans))
    return sizes


class FileStore:
    def __init__(self, dc_id: int = 2) -> None:
        self.dc_id = dc_id
        self.blobs: dict[FileKey, bytes] = {}
        self.references: dict[FileKey, bytes] = {}
        self.documents: dict[int, Any] = {}
        self.parts: dict[int, dict[int, bytes]] = {}
        self._ids = itertools.count(5_000_000_001)

    def _new(self, media_id: int | None = None) -> tuple[int, int, bytes]:
        media_id = next(self._ids) if media_id is None else media_id
        return media_id, media_id * 7919 % (1 << 62), b"ref-" + media_id.to_bytes(8, "big")

    # ---- what users send ------------------------------------------------------------------
    def add_photo(
        self, data: bytes, width: int, height: int, *, media_id: int | None = None
    ) -> Any:
        """A photo a user sends; `media_id` fixes its id (a redelivered update names the same
        photo as the first delivery did), else the next one."""
        media_id, access_hash, reference = self._new(media_id)
        sizes = photo_sizes(len(data), width, height)
        key: FileKey = ("photo", media_id, sizes[-1].type)
        self.blobs[key], self.references[key] = bytes(data), reference
        return raw.types.Photo(
            id=media_id,
            access_hash=access_hash,
            file_reference=reference,
            date=int(time.time()),
            sizes=sizes,
            dc_id=self.dc_id,
        )

    def add_document(
        self, data: bytes, mime_type: str, attributes: list[Any], thumb: bytes | None = None
    ) -> Any:
        media_id, access_hash, reference = self._new()
        key: FileKey = ("document", media_id, "")
        self.blobs[key], self.references[key] = bytes(data), reference
        thumbs = None
        if thumb is not None:  # the uploaded thumbnail, downloadable as size "m"
            width, height = _image_size(thumb)
            self.blobs[("document", media_id, "m")] = bytes(thumb)
            self.references[("document", media_id, "m")] = reference
            thumbs = [raw.types.PhotoSize(type="m", w=width, h=height, size=len(thumb))]
        doc = raw.types.Document(
            id=media_id,
            access_hash=access_hash,
            file_reference=reference,
            date=int(time.time()),
            mime_type=mime_type,
            size=len(data),
            dc_id=self.dc_id,
            attributes=attributes,
            thumbs=thumbs,
        )
        self.documents[media_id] = doc
        return doc

    def data_of(self, doc: Any) -> bytes:
        return self.blobs[("document", doc.id, "")]

    def thumb_of(self, doc: Any) -> bytes | None:
        return self.blobs.get(("document", doc.id, "m"))

    # ---- downloads (upload.getFile) -------------------------------------------------------
    def get_file(self, request: Any) -> Any:
        location = request.location
        if isinstance(location, raw.types.InputPhotoFileLocation):
            key: FileKey = ("photo", location.id, location.thumb_size)
        elif isinstance(location, raw.types.InputDocumentFileLocation):
            key = ("document", location.id, location.thumb_size or "")
        else:
            raise rpc_error(request, "LOCATION_INVALID")
        if key not in self.blobs:
            raise rpc_error(request, "LOCATION_INVALID")
        if location.file_reference != self.references[key]:
            raise rpc_error(request, "FILE_REFERENCE_EXPIRED")
        offset, limit = request.offset, request.limit
        # Telegram's rules for non-precise requests: whole KBs, dividing 1 MB, inside one MB.
        if limit <= 0 or limit % 1024 or MB % limit:
            raise rpc_error(request, "LIMIT_INVALID")
        if offset < 0 or offset % 4096 or offset // MB != (offset + limit - 1) // MB:
            raise rpc_error(request, "OFFSET_INVALID")
        chunk = self.blobs[key][offset : offset + limit]
        return raw.types.upload.File(
            type=raw.types.storage.FilePartial(), mtime=int(time.time()), bytes=chunk
        )

    # ---- uploads (upload.saveFilePart / saveBigFilePart) ----------------------------------
    def save_part(self, request: Any) -> bool:
        if not request.bytes:
            raise rpc_error(request, "FILE_PART_EMPTY")
        if len(request.bytes) > MAX_PART:
            raise rpc_error(request, "FILE_PART_TOO_BIG")
        self.parts.setdefault(request.file_id, {})[request.file_part] = request.bytes
        return True

    def uploaded(self, file_id: int) -> bytes:
        parts = self.parts.get(file_id, {})
        return b"".join(parts[i] for i in sorted(parts))

    def document_from_upload(self, request: Any, media: Any) -> Any:
        """The document Telegram makes of an uploaded file (and its uploaded thumbnail), checked
        as Telegram checks it."""
        data = self.assembled(request, media.file)
        thumb = self.assembled(request, media.thumb) if media.thumb is not None else None
        return self.add_document(data, media.mime_type, list(media.attributes), thumb)

    def assembled(self, request: Any, upload: Any) -> bytes:
        parts = self.parts.get(upload.id, {})
        missing = next((i for i in range(upload.parts) if i not in parts), None)
        if missing is not None:
            raise rpc_error(request, f"FILE_PART_{missing}_MISSING")
        data = b"".join(parts[i] for i in range(upload.parts))
        checksum = getattr(upload, "md5_checksum", "")
        if checksum and checksum != hashlib.md5(data).hexdigest():
            raise rpc_error(request, "MD5_CHECKSUM_INVALID")
        return data


def _image_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(image.width), int(image.height)
    except (OSError, ValueError):  # Telegram keeps what it got; a test checks what that was
        return 0, 0
