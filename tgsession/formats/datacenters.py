"""Telegram's data-centre addresses, for formats that store a DC id but no address.

Pyrogram's session string, and gotd sessions written before their first connection, name
only the DC; a Telethon session needs the address too.
"""

from __future__ import annotations

import ipaddress

from ..codec import DcAddress

__all__ = ["PRODUCTION", "TELEGRAM_PORT", "TEST", "dc_address", "is_test_address"]

TELEGRAM_PORT = 443

#: Production DCs (IPv4), as Telegram's clients ship them.
PRODUCTION: dict[int, str] = {
    1: "149.154.175.53",
    2: "149.154.167.51",
    3: "149.154.175.100",
    4: "149.154.167.91",
    5: "91.108.56.130",
}

#: Telegram's test DCs (``test_mode``).
TEST: dict[int, str] = {
    1: "149.154.175.10",
    2: "149.154.167.40",
    3: "149.154.175.117",
}


def dc_address(dc_id: int, *, test_mode: bool = False) -> DcAddress | None:
    """The well-known address of a DC, or ``None`` for a DC id Telegram does not have."""
    table = TEST if test_mode else PRODUCTION
    address = table.get(dc_id)
    return None if address is None else DcAddress(dc_id, address, TELEGRAM_PORT)


def is_test_address(address: str) -> bool:
    """Whether ``address`` is one of Telegram's test DCs."""
    return address in TEST.values()


def is_private_address(address: str) -> bool:
    """Whether ``address`` is a loopback or private IP (a local server, not Telegram)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address == "localhost"
    return ip.is_loopback or ip.is_private or ip.is_link_local
