"""An offline Telegram for tests: a local MTProto server the unmodified Telethon client uses,
with private chats, groups, supergroups, channels, inline buttons, edits and files.

Example::

    from tgsession.testing import FakeTelegram

    async with FakeTelegram() as tg:
        user = tg.add_user(phone="+15550001", first_name="Ann", username="ann")
        client = tg.client()
        await client.connect()
        await client.send_code_request(user.phone)
        await client.sign_in(user.phone, tg.login_code(user.phone))

In pytest, ``pytest_plugins = ["tgsession.testing.pytest_plugin"]`` gives the
``fake_telegram`` fixture. ``python -m tgsession.testing`` runs a server by hand.
"""

from ._accounts import Account
from ._boxes import StoredMessage
from ._chats import Chat
from ._cli import main, serve
from ._clients import AuthorizedKey, reset_client_config
from ._rsa import trust_test_key
from ._server import DEFAULT_API_HASH, DEFAULT_API_ID, FakeTelegram
from ._world import INLINE_CHANNEL_UPDATES, RpcFailure

__all__ = [
    "DEFAULT_API_HASH",
    "DEFAULT_API_ID",
    "INLINE_CHANNEL_UPDATES",
    "Account",
    "AuthorizedKey",
    "Chat",
    "FakeTelegram",
    "RpcFailure",
    "StoredMessage",
    "main",
    "reset_client_config",
    "serve",
    "trust_test_key",
]
