"""Storages: where a session's bytes live.

:class:`Storage` is the whole contract a user's own storage must meet. The built-in
storages also implement the optional :class:`EntityStorage` and :class:`Lockable`.
Backends with extra dependencies (Redis, PostgreSQL, encryption) are imported lazily.
"""

from __future__ import annotations

from .base import EntityStorage, Lease, Lockable, Storage
from .memory import MemoryStorage

__all__ = ["EntityStorage", "Lease", "Lockable", "MemoryStorage", "Storage"]
