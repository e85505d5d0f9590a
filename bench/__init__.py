"""Benchmarks: tgsession's StorageSession against Telethon's own sessions, side by side.

Run ``python -m bench`` from the repository root (``--quick`` for the smoke run CI does).
Every measure lives in its own module and returns :class:`bench.harness.Row` objects; the
baseline of every ratio is Telethon's ``SQLiteSession``. See docs/benchmarks.md.
"""
