"""Server side of Telegram's 2FA password check (SRP-2048 as in ``account.getPassword``).

Uses Telegram's standard 2048-bit prime with g = 3: Telethon recognises that prime and skips the
primality check it would otherwise run (which, on any other prime, does not finish).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

from telethon import password as telethon_password
from telethon.tl import types

G = 3
PRIME = int(
    "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F"
    "48198A0AA7C14058229493D22530F4DBFA336F6E0AC925139543AED44CCE7C37"
    "20FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"
    "2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4"
    "A4A695811051907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754"
    "FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"
    "E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F"
    "0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B",
    16,
)
PRIME_BYTES = PRIME.to_bytes(256, "big")


# SRP's hash and padding are Telethon's own (telethon.password), so both sides agree.
_h = telethon_password.sha256
_pad = telethon_password.big_num_for_hash
_K = int.from_bytes(_h(PRIME_BYTES, _pad(G)), "big")


def new_algo() -> types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow:
    """The algorithm a client would use to set a new password."""
    return types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
        salt1=os.urandom(8), salt2=os.urandom(16), g=G, p=PRIME_BYTES
    )


@dataclass
class PasswordVerifier:
    """What the server keeps of a 2FA password: salts and the verifier ``g^x mod p``.

    ``srp_sessions`` maps each srp_id handed out by ``account.getPassword`` to its secret
    ``b`` and the ``srp_B`` sent with it.
    """

    salt1: bytes
    salt2: bytes
    verifier: int
    srp_sessions: dict[int, tuple[int, bytes]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_password(cls, password: str) -> PasswordVerifier:
        """Derive the verifier (one PBKDF2 of 100 000 rounds, about 0.1 s)."""
        algo = types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
            salt1=os.urandom(40), salt2=os.urandom(16), g=G, p=PRIME_BYTES
        )
        x = int.from_bytes(telethon_password.compute_hash(algo, password), "big")
        return cls(algo.salt1, algo.salt2, pow(G, x, PRIME))

    @property
    def algo(self) -> types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow:
        """The ``current_algo`` announced by ``account.getPassword``."""
        return types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
            salt1=self.salt1, salt2=self.salt2, g=G, p=PRIME_BYTES
        )

    def start(self) -> tuple[int, bytes]:
        """Open an SRP exchange: returns ``(srp_id, srp_B)``."""
        while True:
            b = int.from_bytes(os.urandom(256), "big") % PRIME
            big_b = (_K * self.verifier + pow(G, b, PRIME)) % PRIME
            if big_b > 0:
                break
        srp_id = secrets.randbits(63)
        self.srp_sessions[srp_id] = (b, _pad(big_b))
        return srp_id, _pad(big_b)

    def check(self, srp_id: int, a_bytes: bytes, m1: bytes) -> bool | None:
        """Whether the client proved the password; ``None`` for an unknown ``srp_id``."""
        session = self.srp_sessions.get(srp_id)
        if session is None:
            return None
        b, big_b = session
        big_a = int.from_bytes(a_bytes, "big")
        if not 0 < big_a < PRIME:
            return False
        a_padded = _pad(big_a)
        u = int.from_bytes(_h(a_padded, big_b), "big")
        secret = pow(big_a * pow(self.verifier, u, PRIME), b, PRIME)
        expected = _h(
            telethon_password.xor(_h(PRIME_BYTES), _h(_pad(G))),
            _h(self.salt1),
            _h(self.salt2),
            a_padded,
            big_b,
            _h(_pad(secret)),
        )
        if expected != m1:
            return False
        del self.srp_sessions[srp_id]
        return True
