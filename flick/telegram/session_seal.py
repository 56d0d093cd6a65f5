"""The bot's MTProto authorization key, sealed before it goes into a database row.

Whoever holds the auth key can act as the bot, like whoever holds BOT_TOKEN. In a file the key is
kept private by the file's mode (flick/private_files.py); a row has no mode, and database dumps
and backups usually travel further than the process environment. So the key is sealed with
AES-GCM under a key derived (HKDF-SHA256) from BOT_TOKEN: reading it takes the database *and*
the token, and the token alone already gives the bot away, so sealing adds no new secret to keep.
A new token (revoked, regenerated) cannot open the old key: the bot then signs in afresh, which
a bot may always do with its token.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_FORMAT: Final = b"\x01"  # the layout below; a later one can be told apart
_NONCE: Final = 12
_INFO: Final = b"flick telegram session auth key"


class Seal:
    """Seals and opens one session's auth key. Its repr shows no key material."""

    __slots__ = ("_aad", "_aead")

    def __init__(self, bot_token: str, session: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
            bot_token.encode()
        )
        self._aead = AESGCM(key)
        # Bound to the session's name: a sealed key copied into another session's row won't open.
        self._aad = session.encode()

    def seal(self, secret: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _FORMAT + nonce + self._aead.encrypt(nonce, secret, self._aad)

    def open(self, sealed: bytes) -> bytes | None:
        """The key, or None when it was sealed under another token (or is damaged)."""
        if sealed[:1] != _FORMAT or len(sealed) < 1 + _NONCE + 16:
            return None
        nonce, box = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, box, self._aad)
        except InvalidTag:
            return None

    def __repr__(self) -> str:
        return "Seal(<key hidden>)"
