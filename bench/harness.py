"""The plain harness: what a result row holds, run settings, and the statistics used."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

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

    def pick(self, full: _V, quick: _V) -> _V:
        """The full run's value, or the quick run's."""
        return quick if self.quick else full

    sizes = pick


@dataclass
class Row:
    """One line of the results: one measure at one size, every contender's median.

    ``target`` is the ratio to SQLiteSession that each ``ts-*`` contender must meet
    (``<=`` when lower is better, ``>=`` when higher is better); ``None`` means the row
    is informative only.
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

    def ratios(self) -> dict[str, float]:
        base = self.contenders.get(BASELINE)
        if not base:
            return {}
        return {name: value / base for name, value in self.contenders.items()}

    def target_met(self) -> dict[str, bool]:
        """Per ``ts-*`` contender: whether its ratio meets the target (empty if none)."""
        if self.target is None:
            return {}
        met = {}
        for name, ratio in self.ratios().items():
            if name.startswith("ts-"):
                met[name] = ratio >= self.target if self.higher_is_better else ratio <= self.target
        return met

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
