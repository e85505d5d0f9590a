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
    SessionCorruptError,
    SessionLockedError,
    SessionNotFoundError,
    SessionStorageError,
)
from tgsession.storage import file as file_module
from tgsession.storage._entitylog import HEADER
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
        await storage.store_entities({1: b"row"})
        lease = await storage.acquire()
        await lease.release()
    assert mode_of(path) == 0o600
    assert mode_of(storage.entities_path) == 0o600
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


async def test_entity_log_open_to_others_is_refused(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_entities({1: b"row"})
    storage.entities_path.chmod(0o644)
    with pytest.raises(SessionStorageError, match="chmod 600"):
        await FileStorage(session_path).load_entities()


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


async def test_symlink_at_entity_log_is_not_written_through(
    session_path: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    session_path.parent.mkdir(mode=0o700)
    session_path.with_name("session.json.entities").symlink_to(victim)
    with pytest.raises(SessionStorageError, match="entities"):
        await FileStorage(session_path).store_entities({1: b"one"})
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


async def test_failed_entity_append_leaves_the_log_readable(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_entities({1: b"one"})
    with file_size_limit(64 * 1024), pytest.raises(SessionStorageError):
        await storage.store_entities({2: b"x" * 1024 * 1024})
    await storage.store_entities({3: b"three"})
    assert await FileStorage(session_path).load_entities() == {1: b"one", 3: b"three"}


# -- the entity log ---------------------------------------------------------------------


async def test_entity_rows_append_only_what_is_given(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_entities({i: b"x" * 100 for i in range(100)})
    size = storage.entities_path.stat().st_size
    await storage.store_entities({5: b"changed"})
    assert storage.entities_path.stat().st_size - size == 16 + len(b"changed")
    rows = await FileStorage(session_path).load_entities()
    assert len(rows) == 100
    assert rows[5] == b"changed"


async def test_entity_rows_keep_arbitrary_bytes_and_ids(session_path: Path) -> None:
    rows = {-(2**63): b"", 2**63 - 1: bytes(range(256)), 0: b"\n\x00\r\n", -1001234567890: b"c"}
    await FileStorage(session_path).store_entities(rows)
    assert await FileStorage(session_path).load_entities() == rows


async def test_torn_entity_tail_loses_at_most_the_last_record(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_entities({1: b"one", 2: b"two"})
    await storage.store_entities({3: b"three", 4: b"four"})
    with open(storage.entities_path, "r+b") as log:
        log.truncate(storage.entities_path.stat().st_size - 3)
    assert await FileStorage(session_path).load_entities() == {1: b"one", 2: b"two", 3: b"three"}


async def test_rows_appended_after_a_torn_tail_are_kept(session_path: Path) -> None:
    await FileStorage(session_path).store_entities({1: b"one", 2: b"two"})
    with open(session_path.with_name("session.json.entities"), "ab") as log:
        log.write(b"\x07\x00\x00")  # a crash in the middle of a record header
    await FileStorage(session_path).store_entities({3: b"three"})
    assert await FileStorage(session_path).load_entities() == {1: b"one", 2: b"two", 3: b"three"}


async def test_corrupt_record_drops_it_and_what_follows(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_entities({1: b"one"})
    await storage.store_entities({2: b"two"})
    data = bytearray(storage.entities_path.read_bytes())
    data[-1] ^= 0xFF
    storage.entities_path.write_bytes(bytes(data))
    assert await FileStorage(session_path).load_entities() == {1: b"one"}


async def test_file_that_is_not_an_entity_log_is_refused_untouched(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_entities({1: b"one"})
    storage.entities_path.write_bytes(b"something else entirely")
    with pytest.raises(SessionCorruptError, match="entity log"):
        await FileStorage(session_path).load_entities()
    with pytest.raises(SessionCorruptError):
        await FileStorage(session_path).store_entities({2: b"two"})
    assert storage.entities_path.read_bytes() == b"something else entirely"


async def test_compaction_keeps_every_live_row_and_shrinks_the_log(session_path: Path) -> None:
    storage = FileStorage(session_path)
    rounds = 4
    for round_ in range(rounds):
        await storage.store_entities({i: f"{i}@{round_}".encode() for i in range(600)})
    expected = {i: f"{i}@{rounds - 1}".encode() for i in range(600)}
    live_size = len(HEADER) + sum(16 + len(value) for value in expected.values())
    assert storage.entities_path.stat().st_size < 2 * live_size
    assert mode_of(storage.entities_path) == 0o600
    assert await FileStorage(session_path).load_entities() == expected


async def test_rows_stored_by_another_object_are_not_overwritten(session_path: Path) -> None:
    first, second = FileStorage(session_path), FileStorage(session_path)
    await first.store_entities({1: b"one"})
    await second.store_entities({2: b"two"})
    await first.store_entities({3: b"three"})
    assert await FileStorage(session_path).load_entities() == {1: b"one", 2: b"two", 3: b"three"}


async def test_clear_then_store_starts_a_fresh_log(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_entities({1: b"one"})
    await storage.clear_entities()
    assert not storage.entities_path.exists()
    await storage.store_entities({2: b"two"})
    assert await FileStorage(session_path).load_entities() == {2: b"two"}


async def test_hundred_thousand_rows_load_back(session_path: Path) -> None:
    rows = {-1000000000000 - i: i.to_bytes(4, "big") * 10 for i in range(100_000)}
    await FileStorage(session_path).store_entities(rows)
    assert await FileStorage(session_path).load_entities() == rows


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
        "store_entities": lambda: storage.store_entities({1: b"one", 2: b"two"}),
        "load_entities": storage.load_entities,
        "store_entities (after a load)": lambda: storage.store_entities({3: b"three"}),
        "store_entities (large batch)": lambda: storage.store_entities(
            {i: b"x" for i in range(10, 1010)}
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
    assert await FileStorage(session_path).load_entities() == {
        1: b"one",
        2: b"two",
        3: b"three",
        **{i: b"x" for i in range(10, 1010)},
    }
