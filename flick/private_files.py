"""Files only Flick may read: made private at creation, whatever the umask, and checked at start.

The data directory holds users' photos, the database and the Telegram session (the bot's
authorization key), so it is created 0700 and every secret file in it 0600. Modes are set
explicitly, never left to the umask: Docker's default umask 022 would make them readable by
every local user. `exposures` lists what is readable by others, for `flick run` (a warning in
the log) and `flick doctor` (a failing line).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

#: Secret files Flick writes under the data directory, as globs relative to it.
SECRET_FILES = (
    "*.session",  # kurigram's session: the bot's authorization key
    "seaweed/s3.json",  # the embedded SeaweedFS's S3 keys
    "seaweed/security.toml",  # its JWT signing keys and TLS set-up
    "seaweed/tls/*.key",  # its TLS private key
)
#: Directories under the data directory that hold users' data; "." is the data directory.
PRIVATE_DIRS = (".", "postgres", "seaweed")
#: Not Flick settings, but secrets that Docker Compose reads from the same `.env`.
COMPOSE_SECRETS = frozenset({"POSTGRES_PASSWORD"})


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) with the directory itself 0700.

    An existing directory keeps its mode: the start-up check reports it if others can enter it.
    """
    path.mkdir(parents=True, exist_ok=True)
    if not any(path.iterdir()):
        # Empty: new, or never used. mkdir's mode is filtered by the umask; chmod is not.
        path.chmod(0o700)
    return path


def create_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """os.open with mode 0600 set explicitly (fchmod), so no umask can widen or narrow it."""
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also tightens a file that existed with a wider mode
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Write `path` atomically (temporary file, fsync, rename), 0600 from its first byte."""
    tmp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(create_private(tmp), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class Exposure:
    """A file or directory that others can reach, and the command that fixes it."""

    path: Path
    mode: int
    who: str  # "other users", "its group" or "its group and other users"

    @property
    def fix(self) -> str:
        wanted = "700" if stat.S_ISDIR(self.mode) else "600"
        return f"chmod {wanted} {self.path}"

    def __str__(self) -> str:
        kind = "directory" if stat.S_ISDIR(self.mode) else "file"
        return (
            f"{kind} {self.path} holds secrets and is readable by {self.who} "
            f"(mode {stat.S_IMODE(self.mode):04o})"
        )


def env_files() -> tuple[Path, ...]:
    """The env files Settings reads (relative to the working directory)."""
    from flick.settings import Settings

    configured = Settings.model_config.get("env_file") or ()
    if isinstance(configured, str | os.PathLike):
        configured = (configured,)
    return tuple(Path(p) for p in configured)


def exposures(data_dir: Path, envs: Iterable[Path] | None = None) -> list[Exposure]:
    """What others can read: the data directory and its private directories (listed or changed
    by others; passing through, o+x, is what a root Flick's embedded PostgreSQL needs), Flick's
    secret files (anyone but the owner counts: they are Flick's alone), and each env file that
    sets a secret (only users outside its group count: `root:flick 0640` is the documented set-up;
    `envs` defaults to the env files Settings reads).
    """
    found: list[Exposure] = []
    data_dir = data_dir.expanduser().absolute()
    for name in PRIVATE_DIRS:
        found.extend(_check(data_dir / name, stat.S_IROTH | stat.S_IWOTH))
    for path in _secret_files(data_dir):
        found.extend(_check(path, stat.S_IRWXG | stat.S_IRWXO))
    for env in env_files() if envs is None else envs:
        env = env.expanduser().absolute()
        if _holds_secrets(env):
            found.extend(_check(env, stat.S_IRWXO))
    return found


def _secret_files(data_dir: Path) -> Iterator[Path]:
    for pattern in SECRET_FILES:
        with contextlib.suppress(OSError):
            yield from sorted(data_dir.glob(pattern))


def _check(path: Path, bits: int) -> list[Exposure]:
    try:
        mode = path.stat().st_mode
    except OSError:
        return []  # absent: nothing to expose
    group, others = mode & bits & stat.S_IRWXG, mode & bits & stat.S_IRWXO
    if not (group or others):
        return []
    who = " and ".join(w for w, on in (("its group", group), ("other users", others)) if on)
    return [Exposure(path, mode, who)]


def secret_names() -> frozenset[str]:
    """Upper-case names of the settings that hold secrets (typed SecretStr), and Compose's."""
    from flick.settings import Settings

    names = {
        name.upper()
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation) or field.annotation is SecretStr
    }
    return frozenset(names | COMPOSE_SECRETS)


def _holds_secrets(env: Path) -> bool:
    """True when the file sets at least one secret to a non-empty value."""
    try:
        lines = env.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    names = secret_names()
    for line in lines:
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        secret = sep and not name.startswith("#") and name.strip().upper() in names
        if secret and value.strip().strip("'\""):
            return True
    return False
