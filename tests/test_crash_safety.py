"""Crash safety: a writer killed (SIGKILL) at any instant leaves the previous or the new
session, never a torn or empty one, and never a stuck lock. Real processes, real files.

``TGSESSION_CRASH_TRIALS`` sets the number of kills per storage (default 150: 300 in all).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import inspect
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.test_file_spare import exchange_works
from tgsession import FileStorage, SessionNotFoundError, SessionStorageError, Storage
from tgsession.keys import generate_key
from tgsession.storage import file as file_module

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork"), reason="forks writers, kills them with SIGKILL"
)

TRIALS = int(os.environ.get("TGSESSION_CRASH_TRIALS", "150"))
WORKERS = max(2, min(4, os.cpu_count() or 2))
KEY = generate_key()
SESSION_SIZE = 32 * 1024  # large enough that a non-atomic write would often be seen torn


def payload(n: int) -> bytes:
    """Session number ``n``: its number, then bytes that depend on it (a torn mix fails)."""
    return b"%d:" % n + hashlib.sha256(b"%d" % n).digest() * (SESSION_SIZE // 32)


def number_of(data: bytes) -> int:
    n = int(data.split(b":", 1)[0])
    assert data == payload(n), f"session {n} is torn ({len(data)} bytes)"
    return n


# The end of every writer script: a warm interpreter that forks one writer per path read
# from stdin, so a trial costs a fork, not an interpreter start. The writer is a real
# process; SIGKILL ends it as it would any other. It prints "ready PID N" once it holds the
# lock and read session N, then each number it stored.
FORK_EACH_LINE = textwrap.dedent(
    """
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(write_forever(line.strip()))
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        # A killed writer may leave half an ack; the newline ends it.
        print("\\ndead", status, flush=True)
    """
)

# The start of every writer: hold the lock, read the session's number, say "ready PID N".
WRITER_START = textwrap.dedent(
    """
    import asyncio, os, sys
    from tgsession import SessionNotFoundError

    async def hold(storage) -> int:
        await storage.acquire()
        try:
            n = number_of(await storage.load_session())
        except SessionNotFoundError:
            n = 0
        print("ready", os.getpid(), n, flush=True)
        return n
    """
)

WRITERS = (
    "import hashlib\n"
    f"SESSION_SIZE = {SESSION_SIZE}\n"
    + inspect.getsource(payload)
    + inspect.getsource(number_of)
    + WRITER_START
    + textwrap.dedent(
        """
        from tgsession import EncryptedStorage, FileStorage

        async def write_forever(path: str) -> None:
            storage = FileStorage(path)
            if os.environ["TGSESSION_TEST_KEY"]:
                storage = EncryptedStorage(storage, os.environ["TGSESSION_TEST_KEY"])
            n = await hold(storage)
            while True:
                n += 1
                await storage.store_session(payload(n))
                print(n, flush=True)

        """
    )
    + FORK_EACH_LINE
)


class Lines:
    """Reads a pipe line by line, with a deadline."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""

    def read_until(self, last: bytes, timeout: float) -> list[bytes] | None:
        """Lines up to and including one starting with ``last``; ``None`` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self._buffer.split(b"\n")
            for index, line in enumerate(lines[:-1]):
                if line.startswith(last):
                    self._buffer = b"\n".join(lines[index + 1 :])
                    return lines[: index + 1]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._fd], [], [], remaining)[0]:
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise EOFError("the writer process ended")
            self._buffer += chunk


class Forker:
    """A running writer script (ending with FORK_EACH_LINE) and its writers, one at a time."""

    def __init__(self, script: str, env: dict[str, str] | None = None) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin = self._process.stdin
        self._lines = Lines(self._process.stdout.fileno())
        self.pid = 0  # the live writer, 0 once reaped (its pid may be reused)

    def start(self, path: Path) -> int | None:
        """Fork a writer on ``path``; the session number it read, None if it did not start."""
        self._stdin.write(b"%s\n" % bytes(path))
        self._stdin.flush()
        ready = self._lines.read_until(b"ready", 30)
        if ready is None:
            return None
        self.pid, started = (int(word) for word in ready[-1].split()[1:])
        return started

    def died_within(self, delay: float) -> bytes | None:
        """The writer's death line if it ended by itself within ``delay``, else None."""
        out = self._lines.read_until(b"dead", delay)
        if out is None:
            return None
        self.pid = 0
        return out[-1]

    def kill(self, started: int) -> tuple[int, int]:
        """SIGKILL the writer; its wait status and the last number it acknowledged (a
        cut-off "12" of "125" is smaller than the "124" before it, so: the largest)."""
        os.kill(self.pid, signal.SIGKILL)
        out = self._lines.read_until(b"dead", 30)
        assert out is not None
        self.pid = 0
        status = int(out[-1].split()[1])
        return status, max([int(line) for line in out[:-1] if line], default=started)

    def close(self) -> None:
        """Leave no writer running, even after a failure."""
        with contextlib.suppress(ProcessLookupError):
            if self.pid:
                os.kill(self.pid, signal.SIGKILL)
        self._stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def open_storage(path: Path, encrypted: bool) -> Storage:
    storage: Storage = FileStorage(path)
    if encrypted:
        from tgsession import EncryptedStorage

        storage = EncryptedStorage(storage, KEY)
    return storage


async def stored_number(path: Path, encrypted: bool) -> int:
    """The number stored at ``path`` (0 for none), after checking that the lock is free and
    that its spare, once relocked, holds no session (the writers wrote through it)."""
    storage = FileStorage(path)
    lease = await storage.acquire()  # fails fast if the dead writer kept it
    try:
        if storage.spare_path.exists():
            assert not storage.spare_path.read_bytes().strip(b"\0"), "a session in the spare"
        return number_of(await open_storage(path, encrypted).load_session())
    except SessionNotFoundError:
        return 0
    finally:
        await lease.release()


def kill_writers(path: Path, encrypted: bool, trials: int, seed: int) -> list[str]:
    """Run ``trials`` writers on ``path``, killing each at a random moment; the failures."""
    rng = random.Random(seed)
    forker = Forker(WRITERS, env=dict(os.environ, TGSESSION_TEST_KEY=KEY if encrypted else ""))
    failures: list[str] = []
    before = 0  # what the file holds before this trial
    spare = FileStorage(path).spare_path
    spare_used = 0  # trials after which the spare was there: the writer wrote through it
    try:
        for trial in range(trials):
            started = forker.start(path)
            if started is None:
                return [*failures, f"trial {trial}: the writer did not start"]
            # Kill anywhere from the first write to many writes in.
            delay = rng.uniform(0.0, 0.06) if rng.random() < 0.8 else rng.uniform(0.0, 0.003)
            death = forker.died_within(delay)
            if death is not None:
                return [*failures, f"trial {trial}: the writer died by itself: {death!r}"]
            status, last = forker.kill(started)
            if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
                failures.append(f"trial {trial}: the writer ended with status {status}")
            if started != before:
                failures.append(f"trial {trial}: the writer read {started}, {before} was stored")
            spare_used += spare.exists()
            try:
                found = asyncio.run(stored_number(path, encrypted))
            except Exception as error:
                failures.append(f"trial {trial}: after {last} acknowledged: {error!r}")
                before = 0
                continue
            if found not in (last, last + 1):
                failures.append(f"trial {trial}: {last} acknowledged but {found} stored")
            before = found
    finally:
        forker.close()
    if trials >= 10 and not spare_used and exchange_works(path.parent):
        failures.append(f"the writers on {path} never wrote through the spare")
    return failures


@pytest.mark.parametrize("encrypted", [False, True], ids=["file", "encrypted-file"])
def test_killed_writer_leaves_previous_or_new_session(tmp_path: Path, encrypted: bool) -> None:
    paths = [tmp_path / f"worker{i}" / "session.json" for i in range(WORKERS)]
    shares = [TRIALS // WORKERS + (i < TRIALS % WORKERS) for i in range(WORKERS)]
    seed = random.randrange(2**32)
    with ThreadPoolExecutor(WORKERS) as pool:
        results = pool.map(
            kill_writers,
            paths,
            [encrypted] * WORKERS,
            shares,
            [seed + i for i in range(WORKERS)],
        )
        failures = [failure for result in results for failure in result]
    assert not failures, f"seed {seed}:\n" + "\n".join(failures)
    # The kills were not all before the first write: sessions were written throughout.
    written = sum(asyncio.run(stored_number(path, encrypted)) for path in paths)
    assert written >= TRIALS


def test_killed_writer_leaves_no_temporary_file_once_relocked(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    assert not kill_writers(path, encrypted=False, trials=5, seed=1)
    asyncio.run(stored_number(path, encrypted=False))  # the spare, if any, holds zeros
    names = {p.name for p in tmp_path.iterdir()} - {".session.json.spare"}
    assert sorted(names) == ["session.json", "session.json.lock"]


# -- a full disk ------------------------------------------------------------------------


@pytest.mark.parametrize("encrypted", [False, True], ids=["file", "encrypted-file"])
async def test_disk_full_is_a_clear_error_and_keeps_the_session(
    tmp_path: Path, encrypted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "session.json"
    storage = open_storage(path, encrypted)
    await storage.store_session(payload(1))

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(file_module, "_fsync", no_space)
    with pytest.raises(SessionStorageError) as raised:
        await storage.store_session(payload(2))
    assert str(path) in str(raised.value)
    assert "ENOSPC" in str(raised.value)
    monkeypatch.undo()
    assert number_of(await open_storage(path, encrypted).load_session()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.json"]


FILE_SIZE_LIMIT = textwrap.dedent(
    """
    import asyncio, resource, signal, sys
    from tgsession import FileStorage, SessionStorageError

    async def main() -> None:
        storage = FileStorage(sys.argv[1])
        await storage.store_session(b"small session")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write(), not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            await storage.store_session(b"x" * 100_000)
        except SessionStorageError as error:
            print(error)

    asyncio.run(main())
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
async def test_a_real_failed_write_is_a_clear_error_and_keeps_the_session(
    tmp_path: Path,
) -> None:
    path = tmp_path / "session.json"
    done = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT, str(path)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    message = done.stdout.decode()
    assert str(path) in message and "EFBIG" in message, done
    assert await FileStorage(path).load_session() == b"small session"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.json"]


# -- entity writes killed at random points ------------------------------------------------

#: Kills per run of the entity campaign (``TGSESSION_ENTITY_CRASH_TRIALS``; a few seconds).
ENTITY_TRIALS = int(os.environ.get("TGSESSION_ENTITY_CRASH_TRIALS", "40"))
ENTITY_IDS = 3000


def entity_batch(n: int) -> list[int]:
    """The ids that batch ``n`` stores (the same in the writer and in the checks)."""
    rng = random.Random(n)
    return rng.sample(range(ENTITY_IDS), rng.randint(1, 400))


def entity_row(entity_id: int, n: int) -> bytes:
    """Row ``entity_id`` as batch ``n`` writes it; long enough to span SQLite pages."""
    body = hashlib.sha256(b"%d/%d" % (entity_id, n)).digest()
    return b"%d:%d:" % (entity_id, n) + body * (1 + (entity_id * 7 + n) % 60)


def entity_row_version(entity_id: int, row: bytes) -> int:
    """Which batch wrote ``row``; fails if it is torn or belongs to another id."""
    stored_id, n, _ = row.split(b":", 2)
    assert int(stored_id) == entity_id, f"row {entity_id} holds the row of {int(stored_id)}"
    assert row == entity_row(entity_id, int(n)), f"row {entity_id} is torn"
    return int(n)


ENTITY_WRITERS = (
    "import hashlib, random\n"
    f"SESSION_SIZE = {SESSION_SIZE}\nENTITY_IDS = {ENTITY_IDS}\n"
    + inspect.getsource(payload)
    + inspect.getsource(number_of)
    + inspect.getsource(entity_batch)
    + inspect.getsource(entity_row)
    + WRITER_START
    + textwrap.dedent(
        """
        # Each step stores a batch of rows with their lookup keys, then the session
        # document naming it.
        from tgsession import FileStorage

        async def write_forever(path: str) -> None:
            storage = FileStorage(path)
            n = await hold(storage)
            while True:
                n += 1
                await storage.store_entities([
                    (i, entity_row(i, n), (f"username:u{i}", f"name:batch {n}"))
                    for i in entity_batch(n)
                ])
                await storage.store_session(payload(n))
                print(n, flush=True)

        """
    )
    + FORK_EACH_LINE
)


async def check_entity_store(path: Path, acknowledged: int | None) -> int:
    """Open the store as a restarted process would and check every row; return the
    session's number. ``acknowledged`` is the last step the killed writer reported (None:
    unknown). Raises AssertionError (or the storage's error) on damage."""
    lease = await FileStorage(path).acquire()  # the dead writer's lock is free
    storage = FileStorage(path)
    try:
        try:
            session = number_of(await storage.load_session())
        except SessionNotFoundError:
            session = 0
        if acknowledged is not None:
            assert session in (acknowledged, acknowledged + 1), (
                f"{acknowledged} acknowledged but session {session} stored"
            )
        versions: dict[int, int] = {}
        async for rows in storage.iter_entities(500):
            for entity_id, row in rows:
                versions[entity_id] = entity_row_version(entity_id, row)
        assert await storage.count_entities() == len(versions)
        assert max(versions.values(), default=0) <= session + 1, "a row from the future"
        if acknowledged:  # the acknowledged batch is durable, unless written over since
            for entity_id in entity_batch(acknowledged):
                assert versions.get(entity_id, 0) >= acknowledged, f"lost row {entity_id}"
        for entity_id in list(versions)[:: max(1, len(versions) // 50)]:
            found = await storage.find_entity(f"username:u{entity_id}")
            assert found is not None and found[0] == entity_id
            assert entity_row_version(entity_id, found[1]) == versions[entity_id]
        return session
    finally:
        await storage.aclose()
        await lease.release()


def kill_entity_writers(path: Path, trials: int, seed: int) -> list[str]:
    """Run ``trials`` entity writers on ``path``, killing each at a random moment."""
    rng = random.Random(seed)
    forker = Forker(ENTITY_WRITERS)
    failures: list[str] = []
    before = 0
    try:
        for trial in range(trials):
            started = forker.start(path)
            if started is None:
                return [*failures, f"trial {trial}: the writer did not start"]
            if started != before:
                failures.append(f"trial {trial}: the writer read {started}, {before} was stored")
            death = forker.died_within(rng.uniform(0.0, 0.08))
            if death is not None:
                return [*failures, f"trial {trial}: the writer died by itself: {death!r}"]
            _, last = forker.kill(started)
            try:
                before = asyncio.run(check_entity_store(path, last))
            except Exception as error:
                failures.append(f"trial {trial}: after {last} acknowledged: {error!r}")
                return failures  # later trials would only repeat it
    finally:
        forker.close()
    return failures


def test_killed_entity_writer_leaves_an_intact_store_and_session(tmp_path: Path) -> None:
    workers = 2
    paths = [tmp_path / f"worker{i}" / "session.json" for i in range(workers)]
    shares = [ENTITY_TRIALS // workers + (i < ENTITY_TRIALS % workers) for i in range(workers)]
    seed = random.randrange(2**32)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(kill_entity_writers, paths, shares, [seed + i for i in range(workers)])
        failures = [failure for result in results for failure in result]
    assert not failures, f"seed {seed}:\n" + "\n".join(failures)
    # Writes happened throughout, not only before the first kill.
    stored = sum(asyncio.run(check_entity_store(path, None)) > 0 for path in paths)
    assert stored == workers
