"""Where a session's entities live: a bounded hot cache in memory over the storage.

Telethon resolves peers (an id, ``@username``, a phone, a name) through its session and
hands it every user and chat it sees. :class:`EntityCache` answers from a bounded
least-recently-used set of rows in memory (the hot cache), synchronously; a miss becomes
one point lookup in an :class:`~tgsession.storage.EntityStorage`, so the whole stored
cache is never loaded and memory does not grow with it.

Rows that changed wait in memory (``unwritten``) until the session's writer stores them,
with their lookup keys; until then lookups find them there, even after the hot cache
evicted them. A storage with only the two-method :class:`~tgsession.Storage` keeps the
hot cache inline in the session document instead: its :data:`INLINE_ENTITY_LIMIT` most
recently used rows.

Lookup keys in the storage may be stale (a username that moved to another user): a row
found by a key counts only if the row, decoded, still has that value. A row found by id
is not indexed by its keys in the hot cache: only a key lookup (or Telegram, through
``process_entities``) says who holds a username now.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from ._errors import SessionCorruptError
from .codec import EntityRow, decode_entity_row, encode_entity_row, entity_lookup_keys, lookup_key
from .storage.base import EntityRecord, EntityStorage

__all__ = [
    "DEFAULT_ENTITY_CACHE_SIZE", "INLINE_ENTITY_LIMIT", "EntityCache", "Found", "HotCache",
    "Step", "entity_records", "iter_entity_rows",
]

log = logging.getLogger("tgsession")

#: Rows a session keeps in memory by default (a few MB); see ``StorageSession.open``.
DEFAULT_ENTITY_CACHE_SIZE = 10_000
#: Rows a two-method storage keeps inline in the session document at most (the most
#: recently used): every save encodes and writes them all (2,000 rows: about 130 KB and
#: 1.5 ms of encoding; 10,000 would be 650 KB and 8 ms per save).
INLINE_ENTITY_LIMIT = 2_000

#: Where each kind of lookup key sits in an :data:`~tgsession.codec.EntityRow`.
_FIELD: dict[str, int] = {"username": 2, "phone": 3, "name": 4}

#: One step of a lookup, in Telethon's order: ``("id", (id, ...))`` finds any of the
#: marked ids; ``("username", "alice")`` and the like find the holder of a key.
Step = tuple[str, "tuple[int, ...] | str"]
#: ``(marked id, access hash)``, what Telethon's ``get_entity_rows_by_*`` return.
Found = tuple[int, int]


class HotCache:
    """The ``size`` most recently used rows, indexed by username, phone and name.

    An index entry points to the row that most recently claimed the value; it is removed
    when that row changes or leaves the cache.
    """

    __slots__ = ("by_name", "by_phone", "by_username", "rows", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows: OrderedDict[int, EntityRow] = OrderedDict()
        self.by_username: dict[str, int] = {}
        self.by_phone: dict[str, int] = {}
        self.by_name: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _index(self, kind: str) -> dict[str, int]:
        return self.by_username if kind == "username" else (
            self.by_phone if kind == "phone" else self.by_name
        )

    def get(self, entity_id: int) -> EntityRow | None:
        """The row of ``entity_id``, marked as just used; ``None`` if not here."""
        row = self.rows.get(entity_id)
        if row is not None:
            self.rows.move_to_end(entity_id)
        return row

    def find(self, kind: str, value: str) -> EntityRow | None:
        """The row that holds ``value`` as its ``kind``, marked as just used."""
        entity_id = self._index(kind).get(value)
        return None if entity_id is None else self.get(entity_id)

    def put(self, row: EntityRow, *, indexed: bool = True) -> None:
        """Add or replace a row as the most recently used one; evict beyond ``size``.

        ``indexed=False`` keeps the row out of the key indexes (a row read by id, whose
        keys may have moved to other rows since it was stored).
        """
        # On the hot path of process_entities: written for speed (locals, no loops).
        entity_id, _, username, phone, name = row
        rows = self.rows
        old = rows.pop(entity_id, None)
        if old is not None:
            self._unindex(old)
        rows[entity_id] = row
        if indexed:
            if username is not None:
                self.by_username[username] = entity_id
            if phone is not None:
                self.by_phone[phone] = entity_id
            if name is not None:
                self.by_name[name] = entity_id
        if len(rows) > self.size:
            self._unindex(rows.popitem(last=False)[1])

    def index(self, kind: str, value: str, entity_id: int) -> None:
        """Record that the cached row ``entity_id`` holds ``value`` as its ``kind``."""
        if entity_id in self.rows:
            self._index(kind)[value] = entity_id

    def _unindex(self, row: EntityRow) -> None:
        entity_id, _, username, phone, name = row
        if username is not None and self.by_username.get(username) == entity_id:
            del self.by_username[username]
        if phone is not None and self.by_phone.get(phone) == entity_id:
            del self.by_phone[phone]
        if name is not None and self.by_name.get(name) == entity_id:
            del self.by_name[name]

    def clear(self) -> None:
        self.rows.clear()
        self.by_username.clear()
        self.by_phone.clear()
        self.by_name.clear()


class EntityCache:
    """The entity cache of one session: hot rows in memory, the rest in ``storage``.

    ``storage`` is ``None`` when the rows live inline in the session document (then the
    hot cache is the whole cache). ``self_row`` answers an id the cache does not hold
    (Telethon's "self" row, id 0, and the account's own id, kept in the session document).
    ``describe()`` names the storage in warnings; it is called only when one is logged.
    """

    def __init__(
        self,
        storage: EntityStorage | None,
        size: int,
        *,
        describe: Callable[[], str],
        self_row: Callable[[int], Found | None] = lambda _id: None,
    ) -> None:
        self.storage = storage
        self.hot = HotCache(size)
        #: Changed rows not stored yet (with a storage only), oldest first.
        self.unwritten: dict[int, EntityRow] = {}
        #: Whether the stored rows are to be removed before the next rows are stored.
        self.cleared = False
        self._describe = describe
        self._self_row = self_row

    @property
    def size(self) -> int:
        return self.hot.size

    # -- what Telethon sees ----------------------------------------------------------

    def learn(self, rows: Iterable[EntityRow]) -> bool:
        """Take rows Telethon saw; return whether any changed (and so waits to be stored).

        The hot path of every request and update: an unchanged row costs a dict compare
        and a move to the recent end.
        """
        hot_rows = self.hot.rows
        keep = self.storage is not None
        changed = False
        for row in rows:
            entity_id = row[0]
            if hot_rows.get(entity_id) == row:
                hot_rows.move_to_end(entity_id)
                continue
            self.hot.put(row)
            if keep:
                self.unwritten[entity_id] = row
            changed = True
        return changed

    def load_inline(self, rows: Sequence[EntityRow]) -> None:
        """Rows from the session document: the hot cache inline, or rows to move into
        the storage (a document written before the storage kept rows)."""
        for row in rows[-self.hot.size:]:
            self.hot.put(row)
        if self.storage is not None:
            self.unwritten.update((row[0], row) for row in rows)

    def inline_rows(self, limit: int | None = None) -> list[EntityRow]:
        """The hot cache's rows, least recently used first; with ``limit``, only the
        ``limit`` most recently used."""
        rows = self.hot.rows
        if limit is None or len(rows) <= limit:
            return list(rows.values())
        return list(itertools.islice(reversed(rows.values()), limit))[::-1]

    def forget(self) -> None:
        """Drop every row, here and (on the next write) in the storage."""
        self.hot.clear()
        self.unwritten.clear()
        self.cleared = self.storage is not None

    def hold_all_for_writing(self) -> None:
        """Mark every row held in memory as unwritten (the storage lost what it had)."""
        if self.storage is not None:
            for entity_id, row in self.hot.rows.items():
                self.unwritten.setdefault(entity_id, row)

    # -- lookups ---------------------------------------------------------------------

    def resolve_now(self, steps: Sequence[Step]) -> Found | int | None:
        """Resolve from memory: the answer, ``None`` when nothing holds it, or the index
        of the first step that must ask the storage (answer it with :meth:`resolve`)."""
        for position, step in enumerate(steps):
            found = self.find_in_memory(step)
            if found is not None:
                return found
            if self.storage is not None and not self.cleared:
                return position
        return None

    async def resolve(self, steps: Sequence[Step], start: int) -> Found | None:
        """Resolve ``steps[start:]``, each in memory first, then in the storage."""
        for position in range(start, len(steps)):
            step = steps[position]
            # Memory again: rows may have arrived while an earlier step awaited the storage.
            found = self.find_in_memory(step)
            if found is None:
                found = await self._from_storage(step)
            if found is not None:
                return found
        return None

    def find_in_memory(self, step: Step) -> Found | None:
        """Resolve one step from memory only: hot rows, unwritten rows, the self row."""
        kind, what = step
        if isinstance(what, tuple):
            for entity_id in what:
                row = self.hot.get(entity_id)
                if row is None:
                    row = self.unwritten.get(entity_id)
                    if row is not None:
                        self.hot.put(row)
                if row is not None:
                    return row[0], row[1]
            for entity_id in what:
                found = self._self_row(entity_id)
                if found is not None:
                    return found
            return None
        row = self.hot.find(kind, what)
        if row is None and self.unwritten:
            row = self._find_unwritten(kind, what)
        return None if row is None else (row[0], row[1])

    def _find_unwritten(self, kind: str, value: str) -> EntityRow | None:
        # Only rows the hot cache evicted before they were stored can be found here: the
        # writer stores rows within a turn or two of the loop, so the scan is short.
        field = _FIELD[kind]
        found = None
        for row in self.unwritten.values():
            if row[field] == value:
                found = row
        if found is not None:
            self.hot.put(found)
        return found

    async def _from_storage(self, step: Step) -> Found | None:
        storage = self.storage
        if storage is None or self.cleared:
            return None
        kind, what = step
        if isinstance(what, tuple):
            # A bare id is most often a user's (the first candidate): ask for it alone; the
            # chat and channel readings go together, one round trip (Telethon's catch-up
            # looks up every channel of the update state this way while connecting).
            first, rest = what[:1], what[1:]
            for group in (first, rest):
                if len(group) == 1:  # awaited directly: a task for one call costs a loop turn
                    raws = [await storage.get_entity(group[0])]
                else:
                    raws = await asyncio.gather(*(storage.get_entity(i) for i in group))
                for entity_id, raw in zip(group, raws, strict=True):
                    row = self._newest(entity_id, raw)
                    if row is not None and row[0] == entity_id:
                        if entity_id not in self.hot.rows:
                            self.hot.put(row, indexed=False)
                        return row[0], row[1]
            return None
        hit = await storage.find_entity(lookup_key(kind, what))
        if hit is None:
            return None
        entity_id, raw = hit
        row = self._newest(entity_id, raw)
        if row is None or row[0] != entity_id or row[_FIELD[kind]] != what:
            return None  # a stale key: the row no longer holds this value
        if entity_id in self.hot.rows:
            self.hot.get(entity_id)
        else:
            self.hot.put(row, indexed=False)
        self.hot.index(kind, what, entity_id)
        return row[0], row[1]

    def _newest(self, entity_id: int, raw: bytes | None) -> EntityRow | None:
        """The newest known version of a row: memory (it may not be stored yet) wins."""
        row = self.hot.rows.get(entity_id) or self.unwritten.get(entity_id)
        if row is not None or raw is None:
            return row
        try:
            return decode_entity_row(raw, source=f"{self._describe()} entity {entity_id}")
        except SessionCorruptError as exc:
            # A torn row costs one lookup (Telethon asks Telegram), never the session.
            log.warning("ignored an unreadable cached entity: %s", exc)
            return None

    # -- writing ---------------------------------------------------------------------

    def take_unwritten(self) -> tuple[bool, dict[int, EntityRow]]:
        """What the writer stores next: (clear first?, rows). Rows stay findable in
        :attr:`unwritten` until :meth:`stored` confirms them."""
        return self.cleared, dict(self.unwritten)

    def stored(self, cleared: bool, rows: dict[int, EntityRow]) -> None:
        """Forget the unwritten rows that ``rows`` stored, unless they changed since."""
        if cleared:
            self.cleared = False
        unwritten = self.unwritten
        for entity_id, row in rows.items():
            if unwritten.get(entity_id) is row:
                del unwritten[entity_id]


def entity_records(rows: Iterable[EntityRow]) -> list[EntityRecord]:
    """Rows as a storage keeps them: ``(id, encoded row, lookup keys)``."""
    return [(row[0], encode_entity_row(row), entity_lookup_keys(row)) for row in rows]


async def iter_entity_rows(
    storage: EntityStorage, *, batch: int = 1000, source: str = "entity cache"
) -> AsyncIterator[list[EntityRow]]:
    """Every stored row, decoded, in batches of at most ``batch`` (bounded memory).

    For export and copy; rows that cannot be decoded are skipped with one warning.
    """
    skipped = 0
    async for chunk in storage.iter_entities(batch):
        rows: list[EntityRow] = []
        for entity_id, raw in chunk:
            try:
                rows.append(decode_entity_row(raw, source=f"{source} entity {entity_id}"))
            except SessionCorruptError:
                skipped += 1
        if rows:
            yield rows
    if skipped:
        log.warning("skipped %d unreadable cached entities in %s", skipped, source)
