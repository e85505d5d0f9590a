"""The plain harness: what a result row holds, run settings, the statistics used, and the
ticker that measures event-loop stalls."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

_V = TypeVar("_V")

#: The baseline every ratio is taken against.
BASELINE = "sqlite"

#: Column order of the table and the plot; ``ts-*`` are tgsession's StorageSession.
CONTENDERS = (
    "sqlite",
    "string",
    "memory",
    "ts-memory",
    "ts-file",
    "ts-redis",
    "ts-postgres",
)

#: What each short name stands for (printed under the table and in docs/benchmarks.md).
DESCRIPTIONS = {
    "sqlite": "Telethon SQLiteSession (temp file) - the baseline",
    "string": "Telethon StringSession",
    "memory": "Telethon MemorySession",
    "ts-memory": "StorageSession over MemoryStorage",
    "ts-file": "StorageSession over FileStorage",
    "ts-redis": "StorageSession over RedisStorage",
    "ts-postgres": "StorageSession over PostgresStorage",
    "raw pg connect": "a PostgreSQL connection with no driver, until the server is ready "
                      "(the restart floor row)",
}


@dataclass
class Settings:
    """How big and how often: the full run and the ``--quick`` smoke run differ only here."""

    quick: bool
    workdir: Path
    redis_url: str | None = None
    postgres_url: str | None = None
    #: Why a backend is not measured (``ts-redis`` -> "not reachable: ...").
    unavailable: dict[str, str] = field(default_factory=dict)
    #: Stored caches shared by the measures, by size (see ``contenders.stored_caches``).
    stored: dict[int, Any] = field(default_factory=dict)

    def pick(self, full: _V, quick: _V) -> _V:
        """The full run's value, or the quick run's."""
        return quick if self.quick else full

    sizes = pick


@dataclass
class Row:
    """One line of the results: one measure at one size, every contender's median.

    ``target`` is the ratio to SQLiteSession that each ``ts-*`` contender must meet
    (``<=`` when lower is better, ``>=`` when higher is better); ``target_for`` overrides
    it per contender (a contender absent from both has none); ``None`` and an empty
    ``target_for`` mean the row is informative only. With ``absolute`` the targets bound
    the value itself (megabytes, milliseconds, a ratio measured inside the row), not its
    ratio to SQLiteSession.
    """

    measure: str
    size: int
    unit: str
    contenders: dict[str, float]
    higher_is_better: bool = False
    target: float | None = None
    repeats: int = 0
    p99: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    target_for: dict[str, float] = field(default_factory=dict)
    absolute: bool = False

    @property
    def has_target(self) -> bool:
        return self.target is not None or bool(self.target_for)

    def ratios(self) -> dict[str, float]:
        base = self.contenders.get(BASELINE)
        if not base:
            return {}
        return {name: value / base for name, value in self.contenders.items()}

    def target_of(self, name: str) -> float | None:
        """The target that contender ``name`` must meet, if any."""
        if name in self.target_for:
            return self.target_for[name]
        return self.target if name.startswith("ts-") else None

    def target_met(self) -> dict[str, bool]:
        """Per contender with a target: whether it meets it (empty if none)."""
        measured = self.contenders if self.absolute else self.ratios()
        met = {}
        for name, value in measured.items():
            target = self.target_of(name)
            if target is not None:
                met[name] = value >= target if self.higher_is_better else value <= target
        return met

    def describe_target(self) -> str:
        """``<= 1x``, ``<= 1x (redis 3x, postgres 3x)`` or ``<= 32 MB``; ``-`` if none."""
        if not self.has_target:
            return "-"
        sign = ">=" if self.higher_is_better else "<="
        unit = ("x" if self.unit == "x" else f" {self.unit}") if self.absolute else "x"
        if self.target is not None:
            text = f"{sign} {self.target:g}{unit}"
            others = [f"{name.removeprefix('ts-')} {value:g}{unit}"
                      for name, value in self.target_for.items() if value != self.target]
            return text + (f" ({', '.join(others)})" if others else "")
        return ", ".join(f"{name.removeprefix('ts-')} {sign} {value:g}{unit}"
                         for name, value in self.target_for.items())

    def as_json(self) -> dict[str, object]:
        return {
            "measure": self.measure,
            "size": self.size,
            "contenders": self.contenders,
            "unit": self.unit,
            "ratio_to_sqlite": self.ratios(),
            "higher_is_better": self.higher_is_better,
            "target": None
            if self.target is None
            else f"{'>=' if self.higher_is_better else '<='} {self.target:g}",
            "target_for": self.target_for,
            "absolute": self.absolute,
            "target_met": self.target_met(),
            "repeats": self.repeats,
            "p99": self.p99,
            "notes": self.notes,
        }


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p99(values: Sequence[float]) -> float:
    """The 99th percentile (nearest rank): with under 100 samples, the maximum."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


class Ticker:
    """A task that sleeps ``tick`` at a time and keeps the worst lateness since ``reset()``:
    the longest the event loop was blocked."""

    def __init__(self, tick: float = 0.001) -> None:
        self.tick = tick
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stop = False

    async def _run(self) -> None:
        clock = time.perf_counter
        while not self._stop:
            before = clock()
            await asyncio.sleep(self.tick)
            self.worst = max(self.worst, clock() - before - self.tick)

    def reset(self) -> None:
        self.worst = 0.0

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.02)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop = True
        if self._task is not None:
            await self._task


async def idle_lateness(seconds: float = 0.1) -> float:
    """The ticker's worst lateness with nothing else running: the noise floor."""
    async with Ticker() as ticker:
        ticker.reset()
        await asyncio.sleep(seconds)
        return ticker.worst
