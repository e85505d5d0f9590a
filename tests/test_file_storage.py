"""FileStorage: the storage contract, plus what only a file can promise.

Real files, real permissions, real processes: no mocks of the file system.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.contract import Reopen, StorageContract
from tgsession import (
    FileStorage,
    LeaseLostError,
    SessionLockedError,
    SessionNotFoundError,
    SessionStorageError,
)
from tgsession.codec import encode_entity_row
from tgsession.storage import file as file_module
from tgsession.storage._entitylog import HEADER, encode_records
from tgsession.storage._filelock import FileLease


@pytest.fixture
def session_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "session.json"


class TestFileStorage(StorageContract):
    @pytest.fixture
    def reopen(self, session_path: Path) -> Reopen:
        return lambda: FileStorage(session_path)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


# -- the session file -------------------------------------------------------------------


async def test_missing_file_error_names_the_file(session_path: Path) -> None:
    with pytest.raises(SessionNotFoundError, match=str(session_path)):
        await FileStorage(session_path).load_session()


async def test_empty_file_counts_as_nothing_stored(session_path: Path) -> None:
    session_path.parent.mkdir(mode=0o700)
    session_path.touch(mode=0o600)
    with pytest.raises(SessionNotFoundError, match="empty"):
        await FileStorage(session_path).load_session()


async def test_storing_empty_bytes_deletes_the_file(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_session(b"data")
    await storage.store_session(b"")
    assert not session_path.exists()


async def test_repr_shows_the_path_and_never_the_contents(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_session(b"secret auth key")
    assert str(session_path) in repr(storage)
    assert "secret" not in repr(storage)


def test_path_is_absolute_with_home_expanded() -> None:
    assert FileStorage("~/s.json").path == Path.home() / "s.json"
    assert FileStorage("rel/s.json").path.is_absolute()


@pytest.mark.parametrize("mask", [0o000, 0o022])
async def test_files_are_0600_and_new_folders_0700_whatever_the_umask(
    tmp_path: Path, mask: int
) -> None:
    path = tmp_path / "a" / "b" / "session.json"
    storage = FileStorage(path)
    with umask(mask):
        await storage.store_session(b"data")
        await storage.store_entities([(1, b"row", ("username:row",))])
        lease = await storage.acquire()
        await lease.release()
    assert mode_of(path) == 0o600
    for suffix in ("", "-wal", "-shm"):
        database = storage.entities_path.with_name(storage.entities_path.name + suffix)
        assert mode_of(database) == 0o600, database
    assert mode_of(storage.lock_path) == 0o600
    assert mode_of(tmp_path / "a") == 0o700
    assert mode_of(tmp_path / "a" / "b") == 0o700


async def test_existing_folder_permissions_are_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    await FileStorage(tmp_path / "session.json").store_session(b"data")
    assert mode_of(tmp_path) == 0o755


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o602])
async def test_file_open_to_others_is_refused_with_the_fix(session_path: Path, mode: int) -> None:
    await FileStorage(session_path).store_session(b"original")
    session_path.chmod(mode)
    with pytest.raises(SessionStorageError) as refused:
        await FileStorage(session_path).load_session()
    message = str(refused.value)
    assert str(session_path) in message
    assert f"{mode:04o}" in message
    assert f"chmod 600 {session_path}" in message


async def test_refused_file_is_left_untouched(session_path: Path) -> None:
    await FileStorage(session_path).store_session(b"original")
    session_path.chmod(0o644)
    with pytest.raises(SessionStorageError):
        await FileStorage(session_path).store_session(b"replacement")
    assert session_path.read_bytes() == b"original"
    assert mode_of(session_path) == 0o644


async def test_insecure_file_is_used_when_explicitly_allowed(session_path: Path) -> None:
    await FileStorage(session_path).store_session(b"original")
    session_path.chmod(0o644)
    storage = FileStorage(session_path, allow_insecure_permissions=True)
    assert await storage.load_session() == b"original"
    await storage.store_session(b"new")
    assert await storage.load_session() == b"new"


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
async def test_entity_database_open_to_others_is_refused(session_path: Path, suffix: str) -> None:
    storage = FileStorage(session_path)
    await storage.store_entities([(1, b"row", ())])
    exposed = storage.entities_path.with_name(storage.entities_path.name + suffix)
    exposed.chmod(0o644)
    with pytest.raises(SessionStorageError, match="chmod 600") as refused:
        await FileStorage(session_path).get_entity(1)
    assert str(exposed) in str(refused.value)
    with pytest.raises(SessionStorageError, match="chmod 600"):
        await FileStorage(session_path).count_entities()
    assert mode_of(exposed) == 0o644


async def test_file_of_another_user_is_refused(session_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    await FileStorage(session_path).store_session(b"original")
    os.chown(session_path, 65534, 65534)
    with pytest.raises(SessionStorageError, match="uid 65534"):
        await FileStorage(session_path).load_session()


async def test_leftover_temporary_files_are_ignored_then_removed(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_session(b"good")
    leftover = session_path.with_name(f".{session_path.name}.0123456789abcdef.tmp")
    leftover.write_bytes(b"torn half of a write")
    assert await storage.load_session() == b"good"
    await storage.store_session(b"better")
    assert await FileStorage(session_path).load_session() == b"better"
    lease = await storage.acquire()
    await lease.release()
    assert not leftover.exists()


async def test_symlink_at_session_path_is_replaced_not_written_through(
    session_path: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    session_path.parent.mkdir(mode=0o700)
    session_path.symlink_to(victim)
    await FileStorage(session_path).store_session(b"session")
    assert victim.read_bytes() == b"not yours"
    assert not session_path.is_symlink()
    assert session_path.read_bytes() == b"session"


async def test_symlink_at_temporary_name_is_not_written_through(
    session_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    session_path.parent.mkdir(mode=0o700)
    planted = session_path.with_name(f".{session_path.name}.{'a' * 16}.tmp")
    planted.symlink_to(victim)
    suffixes = iter(["a" * 16, "b" * 16])
    monkeypatch.setattr(file_module, "_random_suffix", lambda: next(suffixes))
    await FileStorage(session_path).store_session(b"session")
    assert victim.read_bytes() == b"not yours"
    assert planted.is_symlink()
    assert session_path.read_bytes() == b"session"


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
async def test_symlink_at_entity_database_is_not_followed(
    session_path: Path, tmp_path: Path, suffix: str
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    session_path.parent.mkdir(mode=0o700)
    storage = FileStorage(session_path)
    storage.entities_path.with_name(storage.entities_path.name + suffix).symlink_to(victim)
    with pytest.raises(SessionStorageError, match=r"entities\.sqlite"):
        await storage.store_entities([(1, b"one", ())])
    assert victim.read_bytes() == b"not yours"


async def test_cancelled_store_is_never_applied_after_a_later_one(session_path: Path) -> None:
    storage = FileStorage(session_path)
    first = asyncio.ensure_future(storage.store_session(b"first" * 100_000))
    await asyncio.sleep(0)
    first.cancel()
    await storage.store_session(b"second")
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert await FileStorage(session_path).load_session() == b"second"
    assert sorted(p.name for p in session_path.parent.iterdir()) == ["session.json"]


@contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse new files, even to root (which ignores mode bits)."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", folder], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: cannot make a folder read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", folder], check=True)


async def test_failed_store_raises_storage_error_and_keeps_previous_session(
    session_path: Path,
) -> None:
    storage = FileStorage(session_path)
    await storage.store_session(b"previous")
    with read_only_folder(session_path.parent):
        with pytest.raises(SessionStorageError) as failed:
            await storage.store_session(b"next")
        assert await storage.load_session() == b"previous"
    assert str(session_path) in str(failed.value)
    assert sorted(p.name for p in session_path.parent.iterdir()) == ["session.json"]


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Make writes past ``limit`` bytes fail with EFBIG, as a full disk fails with ENOSPC."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)


async def test_write_error_keeps_previous_session_and_removes_the_temporary_file(
    session_path: Path,
) -> None:
    storage = FileStorage(session_path)
    await storage.store_session(b"previous")
    with file_size_limit(64 * 1024), pytest.raises(SessionStorageError) as failed:
        await storage.store_session(b"x" * 1024 * 1024)
    assert str(session_path) in str(failed.value)
    assert os.strerror(errno.EFBIG) in str(failed.value)
    assert await storage.load_session() == b"previous"
    assert sorted(p.name for p in session_path.parent.iterdir()) == ["session.json"]


async def test_failed_entity_write_keeps_what_was_stored(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_entities([(1, b"one", ("username:one",))])
    with file_size_limit(64 * 1024), pytest.raises(SessionStorageError):
        await storage.store_entities([(i, b"x" * 1024, ()) for i in range(2, 1000)])
    await storage.store_entities([(3, b"three", ())])
    reader = FileStorage(session_path)
    assert await reader.find_entity("username:one") == (1, b"one")
    assert await reader.get_entity(3) == b"three"
    assert await reader.get_entity(2) is None  # the failed batch is stored whole or not at all


# -- the entity database ----------------------------------------------------------------


async def test_reads_never_create_the_entity_database(session_path: Path) -> None:
    storage = FileStorage(session_path)
    assert await storage.get_entity(1) is None
    assert await storage.find_entity("username:x") is None
    assert await storage.count_entities() == 0
    assert [batch async for batch in storage.iter_entities()] == []
    await storage.clear_entities()
    assert not session_path.parent.exists()


async def test_ids_outside_int64_are_never_stored_and_never_found(session_path: Path) -> None:
    storage = FileStorage(session_path)
    with pytest.raises(ValueError, match="64-bit"):
        await storage.store_entities([(1, b"one", ()), (1 << 63, b"too big", ())])
    assert await storage.get_entity(1 << 63) is None
    assert await storage.get_entity(-(1 << 63) - 1) is None
    assert await storage.get_entity(1) is None  # the batch was refused whole


async def test_a_file_that_is_not_a_database_is_refused_untouched(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_entities([(1, b"one", ())])
    await storage.aclose()
    for suffix in ("-wal", "-shm"):
        storage.entities_path.with_name(storage.entities_path.name + suffix).unlink(
            missing_ok=True
        )
    storage.entities_path.write_bytes(b"something else entirely" * 100)
    with pytest.raises(SessionStorageError, match=r"not a database.*only a cache"):
        await FileStorage(session_path).get_entity(1)
    assert storage.entities_path.read_bytes() == b"something else entirely" * 100


async def test_rows_stored_by_another_object_are_not_overwritten(session_path: Path) -> None:
    first, second = FileStorage(session_path), FileStorage(session_path)
    await first.store_entities([(1, b"one", ())])
    await second.store_entities([(2, b"two", ())])
    await first.store_entities([(3, b"three", ())])
    reader = FileStorage(session_path)
    assert [await reader.get_entity(i) for i in (1, 2, 3)] == [b"one", b"two", b"three"]


async def test_hundred_thousand_rows_stream_back(session_path: Path) -> None:
    rows = {-1000000000000 - i: i.to_bytes(4, "big") * 10 for i in range(100_000)}
    await FileStorage(session_path).store_entities([(i, row, ()) for i, row in rows.items()])
    seen: dict[int, bytes] = {}
    async for batch in FileStorage(session_path).iter_entities(batch=10_000):
        seen.update(batch)
    assert seen == rows


async def test_aclose_then_use_again_reopens(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_entities([(1, b"one", ())])
    await storage.aclose()
    assert await storage.get_entity(1) == b"one"
    await storage.aclose()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_a_forked_child_uses_the_storage_with_its_own_thread(session_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from tgsession import FileStorage

        storage = FileStorage({str(session_path)!r})
        asyncio.run(storage.store_entities([(1, b"one", ("username:one",))]))
        pid = os.fork()  # the parent's entity thread and connection exist now
        if pid == 0:
            signal.alarm(20)  # a child waiting on a thread it does not have would hang
            found = asyncio.run(storage.find_entity("username:one"))
            asyncio.run(storage.store_entities([(2, b"two", ())]))
            os._exit(0 if found == (1, b"one") else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), asyncio.run(storage.get_entity(2)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["0", "b'two'"], done


# -- migration of the entity log of tgsession 0.x -----------------------------------------


def write_legacy_log(storage: FileStorage, rows: dict[int, bytes], *, tail: bytes = b"") -> None:
    """An entity log exactly as tgsession 0.x wrote it (header, then records)."""
    storage.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(storage.legacy_entities_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as log:
        log.write(HEADER + encode_records(rows.items()) + tail)


def codec_row(peer: int, username: str | None, phone: str | None, name: str | None) -> bytes:
    return encode_entity_row((peer, peer * 3, username, phone, name))


async def test_entity_log_is_imported_once_with_lookup_keys_then_removed(
    session_path: Path,
) -> None:
    storage = FileStorage(session_path)
    await storage.store_session(b"the session document")
    rows = {
        101: codec_row(101, "alice", "15550001", "Alice"),
        -1001234: codec_row(-1001234, "news", None, "News"),
        7: b"a row this version cannot decode",
    }
    write_legacy_log(storage, {**rows, 101: b"an older version of alice"})
    with open(storage.legacy_entities_path, "ab") as log:
        log.write(encode_records([(101, rows[101])]))  # the log keeps the last value per id
    opened = FileStorage(session_path)
    assert await opened.find_entity("username:alice") == (101, rows[101])
    assert await opened.find_entity("phone:15550001") == (101, rows[101])
    assert await opened.find_entity("username:news") == (-1001234, rows[-1001234])
    assert await opened.get_entity(7) == rows[7]
    assert await opened.count_entities() == 3
    assert not storage.legacy_entities_path.exists()
    assert mode_of(storage.entities_path) == 0o600
    assert await FileStorage(session_path).load_session() == b"the session document"
    # A second open finds nothing to import and keeps what was imported.
    assert await FileStorage(session_path).count_entities() == 3


async def test_entity_log_torn_by_a_crash_imports_its_whole_records(session_path: Path) -> None:
    storage = FileStorage(session_path)
    write_legacy_log(storage, {1: b"one", 2: b"two"}, tail=b"\x07\x00\x00")
    assert await storage.count_entities() == 2
    assert await storage.get_entity(2) == b"two"
    assert not storage.legacy_entities_path.exists()


async def test_entity_log_is_imported_by_the_first_write_too(session_path: Path) -> None:
    storage = FileStorage(session_path)
    write_legacy_log(storage, {1: codec_row(1, "one", None, None)})
    await storage.store_entities([(2, b"two", ())])
    assert await FileStorage(session_path).find_entity("username:one") == (
        1,
        codec_row(1, "one", None, None),
    )
    assert not storage.legacy_entities_path.exists()


async def test_entity_log_open_to_others_is_refused_not_imported(session_path: Path) -> None:
    storage = FileStorage(session_path)
    write_legacy_log(storage, {1: b"one"})
    storage.legacy_entities_path.chmod(0o644)
    with pytest.raises(SessionStorageError, match="chmod 600"):
        await storage.get_entity(1)
    assert storage.legacy_entities_path.exists()


async def test_a_file_that_is_not_an_entity_log_is_left_alone(session_path: Path) -> None:
    storage = FileStorage(session_path)
    storage.path.parent.mkdir(mode=0o700)
    storage.legacy_entities_path.write_bytes(b"something else entirely")
    storage.legacy_entities_path.chmod(0o600)
    assert await storage.get_entity(1) is None
    await storage.store_entities([(1, b"one", ())])
    assert storage.legacy_entities_path.read_bytes() == b"something else entirely"
    assert await FileStorage(session_path).get_entity(1) == b"one"


# -- the lock ---------------------------------------------------------------------------


async def test_two_objects_in_one_process_exclude_each_other(session_path: Path) -> None:
    first, second = FileStorage(session_path), FileStorage(session_path)
    lease = await first.acquire()
    with pytest.raises(SessionLockedError) as refused:
        await second.acquire()
    assert refused.value.holder is not None
    assert refused.value.holder.startswith(f"pid {os.getpid()} on ")
    await lease.release()
    await lease.release()  # idempotent
    lease = await second.acquire()
    await lease.release()


async def test_lease_names_its_holder_and_lock_holder_reports_it(session_path: Path) -> None:
    storage = FileStorage(session_path)
    assert await storage.lock_holder() is None
    async with await storage.acquire() as lease:
        assert lease.holder.startswith(f"pid {os.getpid()} on ")
        await lease.check()
        holder = await FileStorage(session_path).lock_holder()
        assert holder is not None
        assert holder.startswith(lease.holder + " since ")
    assert await storage.lock_holder() is None
    assert storage.lock_path.exists()  # never deleted: its inode is what everyone locks


async def test_lease_is_lost_when_released_or_when_the_lock_file_is_deleted(
    session_path: Path,
) -> None:
    storage = FileStorage(session_path)
    lease = await storage.acquire()
    storage.lock_path.unlink()
    with pytest.raises(LeaseLostError, match="was deleted while held"):
        await lease.check()
    await lease.release()
    with pytest.raises(LeaseLostError, match="was deleted while held"):  # lost stays lost
        await lease.check()
    other = await FileStorage(session_path).acquire()
    await other.release()
    with pytest.raises(LeaseLostError, match="released"):
        await other.check()


async def test_a_holder_whose_lock_file_was_deleted_cannot_write_rows(
    session_path: Path,
) -> None:
    storage = FileStorage(session_path)
    lease = await storage.acquire()
    await storage.store_entities([(1, b"mine", ("username:one",))])
    storage.lock_path.unlink()  # a newcomer could lock a new file now
    with pytest.raises(LeaseLostError, match="was deleted"):
        await storage.store_entities([(1, b"stale", ()), (2, b"stale", ())])
    with pytest.raises(LeaseLostError):
        await storage.clear_entities()
    reader = FileStorage(session_path)
    assert await reader.get_entity(1) == b"mine"
    assert await reader.get_entity(2) is None
    await lease.release()
    with pytest.raises(LeaseLostError):  # a lost lease stays lost, released or not
        await storage.store_entities([(2, b"stale", ())])
    await FileStorage(session_path).store_entities([(2, b"unleased, a new object", ())])
    assert await reader.get_entity(2) == b"unleased, a new object"


async def test_lock_across_processes_is_freed_when_the_holder_is_killed(
    session_path: Path,
) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, time
        from tgsession import FileStorage

        async def main():
            lease = await FileStorage({str(session_path)!r}).acquire()
            print("locked", flush=True)
            time.sleep(60)

        asyncio.run(main())
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(SessionLockedError) as refused:
            await FileStorage(session_path).acquire(wait=0.1)
        message = str(refused.value)
        assert f"pid {child.pid} on " in message
        assert str(session_path) in message
        assert refused.value.holder is not None
        assert refused.value.holder.startswith(f"pid {child.pid} on ")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    lease = await FileStorage(session_path).acquire(wait=5)
    await lease.release()


# -- cost: one worker-thread hop per operation ----------------------------------------


@contextmanager
def counted_thread_hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Count the calls into the running loop's executor (``asyncio.to_thread`` uses it)."""
    loop = asyncio.get_running_loop()
    real = loop.run_in_executor
    hops: list[str] = []

    def counting(executor: object, func: object, *args: object) -> object:
        hops.append(getattr(func, "__name__", repr(func)))
        return real(executor, func, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "run_in_executor", counting)
    try:
        yield hops
    finally:
        monkeypatch.undo()


async def test_each_operation_is_one_thread_hop(
    session_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = FileStorage(session_path)
    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "acquire (creating the folder)": storage.acquire,
        "store_session": lambda: storage.store_session(b"session"),
        "load_session": storage.load_session,
        "store_entities (creating the database)": lambda: storage.store_entities(
            [(1, b"one", ("username:one",)), (2, b"two", ())]
        ),
        "get_entity": lambda: storage.get_entity(1),
        "find_entity": lambda: storage.find_entity("username:one"),
        "count_entities": storage.count_entities,
        "store_entities (large batch)": lambda: storage.store_entities(
            [(i, b"x", ()) for i in range(10, 1010)]
        ),
    }
    results: dict[str, object] = {}
    for name, operation in operations.items():
        with counted_thread_hops(monkeypatch) as hops:
            results[name] = await operation()
        assert len(hops) == 1, f"{name}: {hops}"
    lease = results["acquire (creating the folder)"]
    assert isinstance(lease, FileLease)
    await lease.release()
    assert results["get_entity"] == b"one"
    assert results["find_entity"] == (1, b"one")
    assert await FileStorage(session_path).count_entities() == 1002
