"""A server lease's holder text: its machine tag, and when it proves the holder dead.

Proof needs this kernel's boot, our pid namespace, and a pid that is free or belongs to a
process started later; anything else (a zombie, a stopped process, another machine) is
alive. Real processes, no servers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from tgsession.storage._holder import human_holder, is_dead_here, local_holder, tagged_holder
from tgsession.storage._lease import HeldBy, describe_holder

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/stat"), reason="machine tags need Linux's /proc"
)


def tag_fields(holder: str) -> dict[str, str]:
    _, separator, tag = holder.rpartition(" | ")
    assert separator, holder
    return dict(field.split("=", 1) for field in tag.split())


def holder_of(pid: int, **changes: str) -> str:
    """The holder text process ``pid`` of this machine would store (with ``changes``)."""
    fields = {**tag_fields(tagged_holder()), **changes}
    if "start" not in changes:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields["start"] = file.read().rpartition(b")")[2].split()[19].decode()
    tag = " ".join(f"{key}={value}" for key, value in fields.items())
    return f"pid {pid} on {os.uname().nodename} | {tag}"


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_tagged_holder_keeps_the_human_text_and_adds_this_process_tag() -> None:
    holder = tagged_holder()
    assert holder.startswith(local_holder() + " | boot=")
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
        assert tag_fields(holder)["boot"] == file.read().strip()
    assert tag_fields(holder)["pidns"] == os.readlink("/proc/self/ns/pid")
    assert human_holder(holder) == local_holder()
    assert human_holder("pid 1 on a | b") == "pid 1 on a | b"  # not a tag: kept


def test_messages_leave_the_tag_out() -> None:
    assert describe_holder(tagged_holder(), None) == local_holder()
    assert describe_holder(tagged_holder(), 0.0) == f"{local_holder()} (since 00:00:00Z)"
    assert HeldBy(tagged_holder(), None, "token").describe() == local_holder()


def test_this_process_is_alive() -> None:
    assert not is_dead_here(tagged_holder())


def test_exited_process_is_dead(child: subprocess.Popen[bytes]) -> None:
    holder = holder_of(child.pid)
    child.kill()
    child.wait()
    assert is_dead_here(holder)


def test_zombie_is_alive(child: subprocess.Popen[bytes]) -> None:
    holder = holder_of(child.pid)
    child.send_signal(signal.SIGKILL)
    time.sleep(0.2)  # dead, not reaped yet
    assert is_dead_here(holder) is False


def test_stopped_process_is_alive(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGSTOP)
    try:
        assert is_dead_here(holder_of(child.pid)) is False
    finally:
        child.send_signal(signal.SIGCONT)


def test_reused_pid_is_dead(child: subprocess.Popen[bytes]) -> None:
    started_before = str(int(tag_fields(holder_of(child.pid))["start"]) - 1)
    assert is_dead_here(holder_of(child.pid, start=started_before))


def test_no_proof_without_our_boot_and_namespace(child: subprocess.Popen[bytes]) -> None:
    holder = holder_of(child.pid)
    child.kill()
    child.wait()
    assert not is_dead_here(holder.replace(tag_fields(holder)["boot"], str(uuid.uuid4())))
    assert not is_dead_here(holder.replace(tag_fields(holder)["pidns"], "pid:[1]"))
    assert not is_dead_here(human_holder(holder))  # no tag
    assert not is_dead_here(holder.replace(" | ", " ; "))  # no tag either
