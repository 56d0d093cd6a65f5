"""The embedded SeaweedFS has no open door: every socket its processes listen on refuses anonymous
reads and writes, and wrong credentials; Flick's signed S3 access keeps working.

The sockets are found from the running processes (psutil), not from a list: a port a new weed
version opens is probed too.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import stat
from pathlib import Path

import aiohttp
import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import flick.embedded.seaweed as seaweed_module
from flick.embedded import EmbeddedSeaweed
from flick.errors import ServiceError
from flick.storage import S3Storage
from flick.testing.services import connectable_as_nobody, make_storage, processes_using

PHOTO = b"\xff\xd8 a face nobody else may see"
METHODS = ("GET", "PUT", "POST", "DELETE")


def weed_processes(seaweed: EmbeddedSeaweed) -> list[psutil.Process]:
    assert seaweed.pid is not None
    root = psutil.Process(seaweed.pid)
    return [root, *root.children(recursive=True)]


def listening(seaweed: EmbeddedSeaweed) -> dict[int, str]:
    """{port: address} of every TCP socket the weed processes listen on."""
    found = {}
    for proc in weed_processes(seaweed):
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found[conn.laddr.port] = conn.laddr.ip
    return found


def unix_sockets(seaweed: EmbeddedSeaweed) -> set[str]:
    paths = set()
    for proc in weed_processes(seaweed):
        for conn in proc.net_connections(kind="unix"):
            if conn.laddr and os.path.exists(conn.laddr):
                paths.add(conn.laddr)
    return paths


def paths(bucket: str) -> list[str]:
    """What an intruder would try: the object through S3 and filer paths, a plant under videos/,
    the bucket listing, the master's write-token handout and a volume file id."""
    return [
        "/",
        f"/{bucket}/photos/1/a.jpg",
        f"/buckets/{bucket}/photos/1/a.jpg",
        f"/{bucket}/videos/1/planted.mp4",
        f"/buckets/{bucket}/videos/1/planted.mp4",
        f"/buckets/{bucket}/",
        "/dir/assign",
        "/1,0123456789",
    ]


async def anonymous(
    http: aiohttp.ClientSession, method: str, url: str, ssl_context: ssl.SSLContext | None = None
) -> tuple[int, bytes] | None:
    """(status, body) of an unsigned request, or None when the server would not talk at all."""
    data = b"planted by an intruder" if method in ("PUT", "POST") else None
    try:
        async with http.request(method, url, data=data, ssl=ssl_context or False) as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError, ConnectionError):
        return None


def foreign_certificate(tmp_path: Path) -> ssl.SSLContext:
    """A client context with a certificate of its own CA: credentials, but the wrong ones."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flick-weed")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (tmp_path / "foreign.pem").write_bytes(cert.public_bytes(pem))
    (tmp_path / "foreign.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(tmp_path / "foreign.pem", tmp_path / "foreign.key")
    return context


def flick_certificate(seaweed: EmbeddedSeaweed) -> ssl.SSLContext:
    tls = seaweed.root / "tls"
    context = ssl.create_default_context(cafile=tls / "ca.pem")
    context.load_cert_chain(tls / "weed.pem", tls / "weed.key")
    return context


def no_certificate() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def test_every_listening_port_refuses_anonymous_access(
    seaweed: EmbeddedSeaweed, storage: S3Storage, tmp_path: Path
) -> None:
    await storage.put("photos/1/a.jpg", PHOTO, "image/jpeg")
    ports = listening(seaweed)
    s3 = seaweed.ports["s3.port"]
    assert s3 in ports and len(ports) > 1, ports  # more than S3 listens: this test has work
    assert set(ports.values()) == {"127.0.0.1"}, ports  # nothing on other interfaces
    foreign = foreign_certificate(tmp_path)
    served: list[str] = []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for port in sorted(ports):
            for scheme, context in (
                ("http", None),
                ("https", no_certificate()),
                ("https", foreign),
            ):
                if port == s3 and scheme == "https":
                    continue  # S3 speaks plain HTTP, and every request must carry a signature
                for method in METHODS:
                    for path in paths(storage.bucket):
                        url = f"{scheme}://127.0.0.1:{port}{path}"
                        answer = await anonymous(http, method, url, context)
                        if answer is not None and (answer[0] < 400 or PHOTO in answer[1]):
                            served.append(f"{method} {url} -> {answer[0]}")
    assert served == []
    # Nothing was planted, nothing removed or overwritten, and signed access still works.
    assert await storage.get("photos/1/a.jpg") == PHOTO
    for key in ("videos/1/planted.mp4", "planted.mp4"):
        with pytest.raises(KeyError):
            await storage.get(key)
    video = os.urandom(9 * 1024 * 1024)  # several chunks: S3 to the volume server over TLS
    await storage.put("videos/1/kept.mp4", video, "video/mp4")
    assert await storage.get("videos/1/kept.mp4") == video


async def test_the_lock_is_the_certificate_and_a_signed_token_behind_it(
    seaweed: EmbeddedSeaweed,
) -> None:
    """With Flick's own certificate the volume server answers, so the refusals above are its
    lock and not a dead port; and it still wants a signed token to read a file."""
    volume = seaweed.ports["volume.port"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        context = flick_certificate(seaweed)
        answer = await anonymous(http, "GET", f"https://127.0.0.1:{volume}/healthz", context)
        assert answer is not None and answer[0] == 200
        answer = await anonymous(http, "GET", f"https://127.0.0.1:{volume}/1,0123456789", context)
        assert answer is not None and answer[0] == 401


async def test_wrong_s3_credentials_are_refused(seaweed: EmbeddedSeaweed) -> None:
    for access, secret in (
        (seaweed.access_key, "not-the-secret"),
        ("not-the-key", seaweed.secret_key),
    ):
        wrong = S3Storage(seaweed.endpoint, access, secret, "wrong-credentials")
        with pytest.raises(ServiceError, match="refused our credentials"):
            await wrong.start()
        await wrong.close()


async def test_unix_sockets_are_for_this_user_alone_and_refuse_it_too(
    seaweed: EmbeddedSeaweed, storage: S3Storage
) -> None:
    """weed's parts talk through unix sockets in /tmp: only Flick's user may connect, and even
    it (or root) gets nothing there without credentials."""
    await storage.put("photos/1/a.jpg", PHOTO, "image/jpeg")
    sockets = unix_sockets(seaweed)
    assert sockets, "weed listens on unix sockets for its own parts"
    served: list[str] = []
    for path in sorted(sockets):
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) & 0o077 == 0, (path, oct(mode))
        connector = aiohttp.UnixConnector(path=path)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            for method in METHODS:
                for url_path in paths(storage.bucket):
                    answer = await anonymous(http, method, f"http://weed{url_path}")
                    if answer is not None and (answer[0] < 400 or PHOTO in answer[1]):
                        served.append(f"{method} {path}{url_path} -> {answer[0]}")
    assert served == []
    assert await storage.get("photos/1/a.jpg") == PHOTO


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another local user")
def test_another_local_user_cannot_connect_to_the_unix_sockets(seaweed: EmbeddedSeaweed) -> None:
    assert connectable_as_nobody(sorted(unix_sockets(seaweed))) == []


async def test_a_weed_with_an_open_door_is_stopped_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If weed ignored its security set-up (a future version, a bad file), Flick must not run."""

    def open_doors(root: Path) -> Path:
        path = root / "security.toml"
        path.write_text("")  # weed's defaults: every port answers anyone
        return path

    monkeypatch.setattr(seaweed_module, "write_security", open_doors)
    weed = EmbeddedSeaweed(tmp_path)
    with pytest.raises(ServiceError) as caught:
        await weed.start()
    assert caught.value.setting == "S3_ENDPOINT"
    assert "answers without credentials" in str(caught.value)
    assert [p for p in processes_using(weed.root) if p.name() == "weed"] == []


async def test_a_restarted_weed_serves_the_same_objects_under_new_keys(tmp_path: Path) -> None:
    """Certificates and signing keys are new at each start; the objects and S3 keys are not."""
    async with EmbeddedSeaweed(tmp_path) as first, make_storage(first, "keys") as s3:
        await s3.put("photos/1/a.jpg", PHOTO, "image/jpeg")
        bucket = s3.bucket
        before = (first.root / "security.toml").read_bytes()
    async with (
        EmbeddedSeaweed(tmp_path) as second,
        S3Storage(second.endpoint, second.access_key, second.secret_key, bucket) as s3,
    ):
        assert await s3.get("photos/1/a.jpg") == PHOTO
        assert (second.root / "security.toml").read_bytes() != before


def test_probe_tells_a_plain_port_from_a_locked_one() -> None:
    """The start-up check's probe against a plain TCP server that would serve anyone."""
    from flick.embedded.seaweed_security import refuses_without_certificate

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not refuses_without_certificate(port, timeout=1)
    assert refuses_without_certificate(port, timeout=1)  # nothing listens any more
