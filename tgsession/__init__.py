"""tgsession: Telethon sessions that survive restarts, crashes, redeploys and host moves.

Log in once, restart forever::

    from tgsession import TerminalAuth, auth_if_necessary, client_from_environment

    client = await client_from_environment()
    async with client:
        me = await auth_if_necessary(client, TerminalAuth())

The public API is re-exported here; backends with optional dependencies (Redis,
PostgreSQL, encryption) are imported only when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    AuthError,
    ConfigError,
    LeaseLostError,
    SessionCorruptError,
    SessionDecryptError,
    SessionLockedError,
    SessionNotFoundError,
    SessionStorageError,
    SessionVersionError,
    TgSessionError,
)
from .storage import EntityStorage, Lease, Lockable, MemoryStorage, Storage

if TYPE_CHECKING:
    from .auth import (
        BotToken,
        ConstantAuth,
        EnvAuth,
        TerminalAuth,
        UserAuthFlow,
        auth_if_necessary,
    )
    from .client import Client
    from .codec import SessionData
    from .environment import (
        BotFromEnvironment,
        ClientFromEnvironment,
        bot_from_environment,
        client_from_environment,
        storage_from_environment,
    )
    from .session import StorageSession
    from .storage.encrypted import EncryptedStorage
    from .storage.file import FileStorage
    from .storage.postgres import PostgresStorage
    from .storage.redis import RedisStorage
    from .storage.url import storage_from_url

__version__ = "0.1.0"

_LAZY = {
    "BotToken": ".auth",
    "ConstantAuth": ".auth",
    "EnvAuth": ".auth",
    "TerminalAuth": ".auth",
    "UserAuthFlow": ".auth",
    "auth_if_necessary": ".auth",
    "Client": ".client",
    "SessionData": ".codec",
    "BotFromEnvironment": ".environment",
    "ClientFromEnvironment": ".environment",
    "bot_from_environment": ".environment",
    "client_from_environment": ".environment",
    "storage_from_environment": ".environment",
    "StorageSession": ".session",
    "EncryptedStorage": ".storage.encrypted",
    "FileStorage": ".storage.file",
    "PostgresStorage": ".storage.postgres",
    "RedisStorage": ".storage.redis",
    "storage_from_url": ".storage.url",
}

__all__ = [
    "AuthError",
    "BotFromEnvironment",
    "BotToken",
    "Client",
    "ClientFromEnvironment",
    "ConfigError",
    "ConstantAuth",
    "EncryptedStorage",
    "EntityStorage",
    "EnvAuth",
    "FileStorage",
    "Lease",
    "LeaseLostError",
    "Lockable",
    "MemoryStorage",
    "PostgresStorage",
    "RedisStorage",
    "SessionCorruptError",
    "SessionData",
    "SessionDecryptError",
    "SessionLockedError",
    "SessionNotFoundError",
    "SessionStorageError",
    "SessionVersionError",
    "Storage",
    "StorageSession",
    "TerminalAuth",
    "TgSessionError",
    "UserAuthFlow",
    "auth_if_necessary",
    "bot_from_environment",
    "client_from_environment",
    "storage_from_environment",
    "storage_from_url",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tgsession' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
