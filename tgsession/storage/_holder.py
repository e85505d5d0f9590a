"""Who holds a server lease, and whether that process is provably dead on this machine.

A server lease names its holder as text: ``pid 123 on host-a``, which messages show. On
Linux the text also carries a machine tag after :data:`TAG_SEPARATOR`, which messages never
show (:func:`human_holder` strips it)::

    pid 123 on host-a | boot=<boot id> pidns=pid:[4026531836] start=<ticks since boot>

The kernel's boot id and the pid namespace say whether the pid means the same process
here; the start time (field 22 of ``/proc/<pid>/stat``) tells a reused pid from the
holder. A holder killed with ``kill -9`` never releases its lease: a newcomer on the same
machine that proves it dead takes the lease at once instead of waiting for it to expire.
Anything short of proof (no tag, another boot or pid namespace, a zombie, a stopped
process, a ``/proc`` we cannot read) counts as alive.
"""

from __future__ import annotations

import functools
import os
import re
import socket

__all__ = [
    "TAG_SEPARATOR",
    "holder_of",
    "human_holder",
    "is_dead_here",
    "local_holder",
    "tagged_holder",
]

#: Between the human text of a holder and its machine tag.
TAG_SEPARATOR = " | "

_TAG = re.compile(r"boot=(?P<boot>[0-9a-f-]{36}) pidns=(?P<ns>\S+) start=(?P<start>[0-9]+)")
_HUMAN = re.compile(r"pid (?P<pid>[0-9]+) on .*", re.DOTALL)


def local_holder() -> str:
    """Describe this process for other holders: ``pid 123 on host-a``."""
    return holder_of(os.getpid())


def holder_of(pid: int) -> str:
    """``pid 123 on host-a``: process ``pid`` of this host, as holders are named."""
    return f"pid {pid} on {socket.gethostname()}"


def tagged_holder() -> str:
    """:func:`local_holder` with this process's machine tag, where ``/proc`` gives one."""
    tag = _tag_of(os.getpid())
    return local_holder() if tag is None else f"{local_holder()}{TAG_SEPARATOR}{tag}"


def human_holder(holder: str) -> str:
    """``holder`` without its machine tag: what messages show."""
    return _split(holder)[0]


def is_dead_here(holder: str) -> bool:
    """True only if ``holder`` names a process of this kernel boot and this pid namespace
    that no longer runs (its pid is free, or now belongs to a process started later)."""
    human, tag = _split(holder)
    match = _HUMAN.fullmatch(human)
    if tag is None or match is None:
        return False
    here = _here()
    if here is None or tag.group("boot") != here[0] or tag.group("ns") != here[1]:
        return False
    pid = int(match.group("pid"))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # in our own pid namespace, whatever /proc is mounted from
    except ProcessLookupError:
        return True
    except OSError:
        pass  # it exists (another user's process: EPERM)
    start = _start_time(pid)
    return start is not None and start != tag.group("start")


def _split(holder: str) -> tuple[str, re.Match[str] | None]:
    human, separator, tag = holder.rpartition(TAG_SEPARATOR)
    match = _TAG.fullmatch(tag) if separator else None
    return (human, match) if match is not None else (holder, None)


@functools.lru_cache(maxsize=4)
def _tag_of(pid: int) -> str | None:
    """The tag of this process (cached per pid: a forked child has its own)."""
    here, start = _here(), _start_time(pid)
    if here is None or start is None:
        return None
    return f"boot={here[0]} pidns={here[1]} start={start}"


@functools.lru_cache(maxsize=1)
def _here() -> tuple[str, str] | None:
    """This kernel's boot id and our pid namespace, or None (not Linux, or a ``/proc``
    that shows another pid namespace than ours: its pids would not be ours)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot = file.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
        if os.readlink("/proc/self") != str(os.getpid()):
            return None
    except (OSError, ValueError):
        return None
    if not re.fullmatch(r"[0-9a-f-]{36}", boot) or not re.fullmatch(r"\S+", namespace):
        return None
    return boot, namespace


def _start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks after boot), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 1 :].split()  # the command name may hold anything
    if len(fields) < 20 or not fields[19].isdigit():
        return None
    return fields[19].decode()
