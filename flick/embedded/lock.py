"""The data directory: prove it takes writes, and hold it so that only one Flick uses it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Self

from flick.errors import ServiceError
from flick.private_files import create_private, private_dir

MIN_FREE_BYTES = 64 * 1024 * 1024


def prepare_data_dir(path: Path, min_free: int = MIN_FREE_BYTES) -> Path:
    """Create the data directory (0700: it holds users' photos and the bot's session) and prove it
    takes writes before any server is pointed at it."""
    path = path.expanduser().absolute()
    probe = path / f".write-probe-{os.getpid()}"
    try:
        private_dir(path)
        with os.fdopen(create_private(probe), "wb") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
        free = shutil.disk_usage(path).free
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ServiceError(f"data directory {path} is not usable: {reason}", "DATA_DIR") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    if free < min_free:
        raise ServiceError(
            f"data directory {path} has only {free >> 20} MiB free, {min_free >> 20} MiB needed",
            "DATA_DIR",
        )
    return path


class DataDirLock:
    """An flock held for the process lifetime; the kernel drops it if the process dies."""

    def __init__(self, data_dir: Path, name: str = "flick.lock") -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.path = self.data_dir / name
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        try:
            private_dir(self.data_dir)
            fd = create_private(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise ServiceError(
                f"data directory {self.data_dir} is not usable: {exc.strerror or exc}", "DATA_DIR"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ServiceError(
                f"another Flick is already running with data directory {self.data_dir}",
                "DATA_DIR",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
