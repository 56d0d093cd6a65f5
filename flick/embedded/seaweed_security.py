"""What keeps the embedded SeaweedFS closed: only its S3 API answers without Flick's certificate.

`weed mini` opens more than the S3 port: master, volume and filer (HTTP and gRPC), S3's gRPC and
the admin server with its maintenance worker. Bound to 127.0.0.1 they still answer every user of
the host, and none of them asks for credentials by default: the filer serves and takes files, the
master hands out write tokens, gRPC does anything. So each start writes a fresh `security.toml`
(weed reads it from its working directory) that:

- puts every gRPC port (master, volume, filer, S3, admin, worker) behind mutual TLS;
- serves every HTTP port but S3's (master, volume, filer, admin) as HTTPS that demands a client
  certificate, and makes weed's own HTTP clients present one (`https.client`);
- signs reads and writes on the volume and filer servers with JWT keys (`jwt.signing[.read]`,
  `jwt.filer_signing[.read]`), a second lock behind the first.

The certificate authority exists only in memory during the start: its key signs the one
certificate all components share, then is dropped, so nobody can mint another. Keys and tokens
are new at every start; nothing of them needs to survive a restart.

`check_closed` proves the result on the running process: each listening port but S3's must refuse
a client without a certificate, else Flick refuses to start.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import socket
import ssl
from pathlib import Path

import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flick.private_files import private_dir, write_private

# The components that read a [grpc.<name>] section; all share one certificate.
GRPC_COMPONENTS = ("master", "volume", "filer", "s3", "admin", "worker", "client")
HTTPS_SERVERS = ("master", "volume", "filer", "admin")
VALID_DAYS = 3650  # renewed at every start anyway


def write_security(root: Path) -> Path:
    """Write root/tls/{ca,weed}.pem, root/tls/weed.key and root/security.toml, all 0600."""
    tls = private_dir(root / "tls")
    ca_pem, cert_pem, key_pem = _certificates()
    ca, cert, key = tls / "ca.pem", tls / "weed.pem", tls / "weed.key"
    write_private(ca, ca_pem)
    write_private(cert, cert_pem)
    write_private(key, key_pem)
    path = root / "security.toml"
    write_private(path, _security_toml(ca, cert, key).encode())
    return path


def _security_toml(ca: Path, cert: Path, key: Path) -> str:
    def jwt(section: str) -> str:
        # 10 s is weed's default life of a token: long enough for one request.
        return f'[{section}]\nkey = "{secrets.token_hex(32)}"\nexpires_after_seconds = 10\n'

    files = f'cert = "{cert}"\nkey = "{key}"\n'
    parts = [
        jwt("jwt.signing"),
        jwt("jwt.signing.read"),
        jwt("jwt.filer_signing"),
        jwt("jwt.filer_signing.read"),
        # No status pages: the volume UI and the filer's directory metadata stay off.
        "[access]\nui = false\n",
        "[filer.expose_directory_metadata]\nenabled = false\n",
        f'[grpc]\nca = "{ca}"\n',
        *(f"[grpc.{name}]\n{files}" for name in GRPC_COMPONENTS),
        *(f'[https.{name}]\n{files}ca = "{ca}"\n' for name in HTTPS_SERVERS),
        f'[https.client]\nenabled = true\n{files}ca = "{ca}"\n',
    ]
    return "\n".join(parts)


def _certificates() -> tuple[bytes, bytes, bytes]:
    """(CA certificate, certificate, key) as PEM; the certificate serves and authenticates
    every component (server and client use, for 127.0.0.1 and localhost)."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flick embedded SeaweedFS CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flick-weed")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca_cert.public_bytes(pem), cert.public_bytes(pem), key_pem


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def listening_ports(pid: int) -> dict[int, str]:
    """{port: address} of every TCP socket listening in `pid` and its children."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    found: dict[int, str] = {}
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found[conn.laddr.port] = conn.laddr.ip
        except psutil.NoSuchProcess:
            continue
    return found


def refuses_without_certificate(port: int, host: str = "127.0.0.1", timeout: float = 5) -> bool:
    """True when the port speaks TLS and drops a client that has no certificate.

    A plain-text port fails the handshake without a TLS alert (False); a TLS port that serves
    anyone waits for our request (False). Under TLS 1.3 the server checks the client's
    certificate after the client's side of the handshake is done, so its refusal (an alert, or
    the connection closed) arrives on the first read; under TLS 1.2 it is an alert in the
    handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we test the server's demand, not its identity
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return True  # nothing listens (any more): nothing is served
    with raw:
        try:
            tls = context.wrap_socket(raw)
        except ssl.SSLError as exc:
            return _is_alert(exc)
        except OSError:
            return False  # not TLS, or no answer at all: not proven closed
        with tls:
            try:
                return tls.recv(1) == b""  # an orderly close: nothing was served
            except ssl.SSLError as exc:
                return _is_alert(exc) or isinstance(exc, ssl.SSLEOFError)
            except (ConnectionResetError, BrokenPipeError):
                return True
            except OSError:  # a timeout: it waits for a request, so it would serve one
                return False


def _is_alert(exc: ssl.SSLError) -> bool:
    # e.g. TLSV13_ALERT_CERTIFICATE_REQUIRED, SSLV3_ALERT_BAD_CERTIFICATE, TLSV1_ALERT_UNKNOWN_CA
    return "ALERT" in (exc.reason or "")
