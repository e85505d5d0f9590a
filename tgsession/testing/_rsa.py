"""The fake server's throwaway RSA key, and how a Telethon client comes to trust it.

The key pair ships with the package (``test_rsa_key.pem``, ``test_rsa_public_key.pem``): it
protects nothing, it only lets the real handshake run without generating a key at start-up.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import rsa
from telethon.crypto import rsa as telethon_rsa

PRIVATE_KEY_PATH = Path(__file__).with_name("test_rsa_key.pem")
PUBLIC_KEY_PATH = Path(__file__).with_name("test_rsa_public_key.pem")

_trust_lock = threading.Lock()
_trusted = False


@functools.cache
def private_key() -> rsa.PrivateKey:
    """The server's private key, loaded once per process."""
    return rsa.PrivateKey.load_pkcs1(PRIVATE_KEY_PATH.read_bytes())


@functools.cache
def fingerprint() -> int:
    """The key's fingerprint, computed by Telethon's own code so both sides agree."""
    value: int = telethon_rsa._compute_fingerprint(private_key())
    return value


def decrypt(block: bytes) -> bytes:
    """Raw RSA decryption as used by the old handshake scheme: 255 plain bytes."""
    key = private_key()
    plain = pow(int.from_bytes(block, "big"), key.d, key.n)
    return plain.to_bytes(255, "big")


def trust_test_key() -> None:
    """Make every Telethon client in this process accept the fake server's RSA key.

    Telethon keeps one process-wide registry of server keys; this adds the test key to it
    (as a current, not an "old", key). Calling it again does nothing.

    Example::

        trust_test_key()
        client = TelegramClient(StringSession(), api_id, api_hash)
    """
    global _trusted
    with _trust_lock:
        if not _trusted:
            telethon_rsa.add_key(PUBLIC_KEY_PATH.read_text(), old=False)
            _trusted = True

