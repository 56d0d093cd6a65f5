"""S3 storage through miniopy-async: the `flick.ports.Storage` port for MinIO and SeaweedFS.

The bucket is private; links are presigned and time-limited, and only made when a public address
is configured. Large objects are streamed in multipart parts, never held whole in memory.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Self, TypeVar, cast

import aiohttp
from aiohttp_retry import ExponentialRetry, RetryClient
from loguru import logger
from miniopy_async.api import Minio
from miniopy_async.error import InvalidResponseError, S3Error, ServerError

from flick.errors import ServiceError

if TYPE_CHECKING:
    from flick.settings import Settings

T = TypeVar("T")
PART_SIZE = 5 * 1024 * 1024  # S3's minimum; an upload holds about three parts in memory
AUTH_CODES = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken"}
#: Failures on S3's side that a later attempt may not meet (besides any 5xx answer).
BUSY_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}
CREDENTIALS = "S3_ACCESS_KEY/S3_SECRET_KEY"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _safe(part: str) -> str:
    return _UNSAFE.sub("_", part)[:128] or "_"


def timestamp(ts: datetime) -> str:
    """UTC with milliseconds, e.g. 20261125T103000123. A naive datetime is taken as UTC."""
    ts = ts.astimezone(UTC) if ts.tzinfo else ts
    return f"{ts:%Y%m%dT%H%M%S}{ts.microsecond // 1000:03d}"


def photo_key(user_id: int, ts: datetime, file_id: str) -> str:
    return f"photos/{int(user_id)}/{timestamp(ts)}_{_safe(file_id)}.jpg"


def photo_time(key: str) -> datetime | None:
    """When a photo was stored, read back from its key (`photo_key`); None for another key."""
    stamp = key.rsplit("/", 1)[-1].split("_", 1)[0]
    try:
        at = datetime.strptime(stamp[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        return at + timedelta(milliseconds=int(stamp[15:18]))
    except ValueError:
        return None


def combined_key(user_id: int, ts: datetime, style: str) -> str:
    return f"combined/{int(user_id)}/{timestamp(ts)}_{_safe(style)}.jpg"


def video_key(user_id: int, ts: datetime, style: str) -> str:
    return f"videos/{int(user_id)}/{timestamp(ts)}_{_safe(style)}.mp4"


class _FileReader:
    """An open file's `read(n)` for miniopy, off the event loop."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    async def read(self, size: int = -1) -> bytes:
        return await asyncio.to_thread(self._f.read, size)


class S3Storage:
    """`flick.ports.Storage` on one private bucket. Use as `async with S3Storage(...) as s:`."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str = "us-east-1",
        public_url: str | None = None,
        presign_seconds: int = 3600,
        part_size: int = PART_SIZE,
        connect_timeout: float = 10,
    ) -> None:
        self.endpoint, self.bucket, self.secure = endpoint, bucket, secure
        self.public_url = public_url
        self.presign_seconds = presign_seconds
        self.part_size = part_size
        self._connect_timeout = connect_timeout
        try:
            self._client = Minio(
                endpoint, access_key, secret_key, secure=secure, region=region,
                server_url=public_url,  # presigned links carry the public host
            )  # fmt: skip
        except ValueError as exc:
            setting = "S3_PUBLIC_URL" if public_url and "server" in str(exc) else "S3_ENDPOINT"
            raise ServiceError(f"bad S3 address: {exc}", setting) from None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> S3Storage:
        """Storage as configured; the keyword arguments override it (e.g. embedded SeaweedFS)."""
        ak, sk = settings.s3_access_key, settings.s3_secret_key
        return cls(
            endpoint or settings.s3_endpoint or "",
            access_key or (ak.get_secret_value() if ak else ""),
            secret_key or (sk.get_secret_value() if sk else ""),
            settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region,
            public_url=settings.s3_public_url,
            presign_seconds=settings.presign_seconds,
        )

    def __repr__(self) -> str:  # never the secret
        return f"S3Storage(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    async def start(self) -> None:
        """Check reachability and credentials; create the bucket if missing; refuse a public one."""
        timeout = aiohttp.ClientTimeout(connect=self._connect_timeout, sock_read=120)
        session = aiohttp.ClientSession(timeout=timeout)
        retry = ExponentialRetry(attempts=3, statuses={500, 502, 503, 504})
        self._client.set_session(RetryClient(session, retry_options=retry))
        try:
            try:
                await self._ensure_bucket()
            except ValueError as exc:  # miniopy checks the name before any request
                raise ServiceError(f"bad bucket name: {exc}", "S3_BUCKET") from None
            await self._refuse_public()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._client.close_session()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def check(self) -> None:
        """For health checks: raises ServiceError unless the bucket answers."""
        if not await self._call(self._client.bucket_exists(self.bucket)):
            raise ServiceError(f"bucket {self.bucket} does not exist", "S3_BUCKET")

    async def _ensure_bucket(self) -> None:
        if await self._call(self._client.bucket_exists(self.bucket)):
            return
        try:
            await self._call(self._client.make_bucket(self.bucket))
            logger.info("created bucket {}", self.bucket)
        except S3Error as exc:
            if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    async def _refuse_public(self) -> None:
        try:
            policy = json.loads(await self._client.get_bucket_policy(self.bucket))
        except S3Error as exc:
            if exc.code == "AccessDenied":  # a least-privilege key may not read policies
                logger.warning("cannot read the policy of bucket {}: keep it private", self.bucket)
            elif exc.code not in {"NoSuchBucketPolicy", "NotImplemented", "MethodNotAllowed"}:
                raise ServiceError(f"bucket {self.bucket}: {exc.code}", "S3_BUCKET") from None
            return
        if any(_anonymous_allow(st) for st in policy.get("Statement", [])):
            raise ServiceError(
                f"bucket {self.bucket} has a policy that lets anyone access it; remove it "
                "(e.g. `mc anonymous set none`) — Flick keeps users' photos private",
                "S3_BUCKET",
            )

    async def _call(self, aw: Awaitable[T], key: str = "") -> T:
        """One clear ServiceError for what the operator must fix; KeyError for a missing object."""
        try:
            return await aw
        except S3Error as exc:
            if exc.code in AUTH_CODES:
                raise ServiceError(
                    f"S3 at {self.endpoint} refused our credentials ({exc.code})", CREDENTIALS
                ) from None
            if exc.code == "NoSuchKey":
                raise KeyError(key) from None
            if exc.code == "NoSuchBucket":
                raise ServiceError(f"bucket {self.bucket} does not exist", "S3_BUCKET") from None
            if exc.code in BUSY_CODES or getattr(exc.response, "status", 0) >= 500:
                raise ServiceError(
                    f"S3 at {self.endpoint} failed: {exc.code}", "S3_ENDPOINT"
                ) from exc
            raise
        except aiohttp.ClientSSLError as exc:
            raise ServiceError(f"TLS to S3 at {self.endpoint} failed: {exc}", "S3_SECURE") from exc
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise ServiceError(
                f"cannot reach S3 at {self.endpoint}: {exc or type(exc).__name__}", "S3_ENDPOINT"
            ) from exc
        except InvalidResponseError as exc:
            raise ServiceError(
                f"{self.endpoint} does not answer like S3: {str(exc)[:200]}", "S3_ENDPOINT"
            ) from None
        except ServerError as exc:
            raise ServiceError(f"S3 at {self.endpoint} failed: {exc}", "S3_ENDPOINT") from exc

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        body = io.BytesIO(data)
        await self._call(self._client.put_object(self.bucket, key, body, len(data), content_type))

    async def put_file(self, key: str, path: Path, content_type: str) -> int:
        """Store a local file in parts, never whole in memory; returns its size.

        Its size is known up front, so miniopy reads each part straight from the file (in a
        thread), one part in memory at a time.
        """
        f = await asyncio.to_thread(path.open, "rb")
        try:
            size = (await asyncio.to_thread(os.fstat, f.fileno())).st_size
            if size <= self.part_size:  # one plain PUT
                await self.put(key, await asyncio.to_thread(f.read), content_type)
                return size
            await self._call(
                self._client.put_object(
                    self.bucket, key, cast(BinaryIO, _FileReader(f)), length=size,
                    content_type=content_type, part_size=self.part_size,
                    num_parallel_uploads=1,  # one part in memory at a time
                )
            )  # fmt: skip
        finally:
            await asyncio.to_thread(f.close)
        return size

    async def get(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.stream(key)])

    async def stream(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        response = await self._call(self._client.get_object(self.bucket, key), key)
        try:
            async for chunk in response.content.iter_chunked(chunk_size):
                yield chunk
            response.release()
        finally:
            response.close()

    async def size(self, key: str) -> int:
        stat = await self._call(self._client.stat_object(self.bucket, key), key)
        return int(stat.size or 0)

    async def keys(self, prefix: str) -> AsyncIterator[str]:
        """Every key under `prefix`, page by page as S3 lists them."""
        async for obj in self._client.list_objects(self.bucket, prefix=prefix, recursive=True):
            if obj.object_name:
                yield obj.object_name

    async def presign(self, key: str) -> str | None:
        if not self.public_url:
            return None
        expires = timedelta(seconds=self.presign_seconds)
        return await self._call(self._client.presigned_get_object(self.bucket, key, expires))

    async def delete(self, key: str) -> None:
        await self._call(self._client.remove_object(self.bucket, key))


def _anonymous_allow(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal")
    if isinstance(principal, dict):
        principal = principal.get("AWS")
    principals = principal if isinstance(principal, list) else [principal]
    return statement.get("Effect") == "Allow" and "*" in principals
