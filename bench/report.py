"""The outputs: a table on stdout, ``results.json`` and a plot of the ratios (``results.png``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .harness import BASELINE, CONTENDERS, DESCRIPTIONS, Row


def _number(value: float) -> str:
    if value >= 10_000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.2f}"
    if value >= 0.01 or value == 0:
        return f"{value:.3f}"
    return f"{value:.1g}"


def _cell(row: Row, name: str) -> str:
    value = row.contenders.get(name)
    if value is None:
        return "-"
    if name == BASELINE or row.absolute:
        return _number(value)
    ratio = row.ratios().get(name)
    if ratio is None:
        return _number(value)
    shown = f"{ratio:.2f}" if ratio >= 0.01 else f"{ratio:.1g}"
    return f"{_number(value)} ({shown}x)"


def _verdict(row: Row) -> str:
    met = row.target_met()
    if not row.has_target:
        return "-"
    if not met:
        return "n/a"
    bad = [name.removeprefix("ts-") for name, ok in met.items() if not ok]
    return "yes" if not bad else "NO: " + ", ".join(bad)


def _target(row: Row) -> str:
    return row.describe_target()


def _short_target(row: Row) -> str:
    """The target for a plot label: per-contender targets as a range."""
    if not row.target_for:
        return _target(row)
    values = sorted({*row.target_for.values(), *([row.target] if row.target else [])})
    sign = ">=" if row.higher_is_better else "<="
    if len(values) == 1:
        return f"{sign} {values[0]:g}x"
    return f"{sign} {values[0]:g}x to {values[-1]:g}x by storage"


def columns(rows: Sequence[Row]) -> list[str]:
    present = {name for row in rows for name in row.contenders}
    return [name for name in CONTENDERS if name in present] + sorted(
        present.difference(CONTENDERS)
    )


def table(rows: Sequence[Row]) -> str:
    """A plain-text table: median per contender, ratio to SQLiteSession in parentheses."""
    names = columns(rows)
    header = ["measure", "size", "unit", *names, "target", "target met?"]
    lines = [_cells(row, names) for row in rows]
    widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(len(header))]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("-+-".join("-" * w for w in widths))
    out.extend(" | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
               for cells in lines)
    return "\n".join(out)


def _cells(row: Row, names: Sequence[str]) -> list[str]:
    return [row.measure, f"{row.size:,}", row.unit, *(_cell(row, n) for n in names),
            _target(row), _verdict(row)]


def markdown(rows: Sequence[Row]) -> str:
    """The same table in Markdown (for docs/benchmarks.md)."""
    names = columns(rows)
    header = ["measure", "size", "unit", *names, "target", "met?"]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out.extend("| " + " | ".join(_cells(row, names)) + " |" for row in rows)
    with_p99 = [row for row in rows if row.p99]
    if with_p99:
        shown = [n for n in names if any(n in r.p99 for r in with_p99)]
        out += ["", "| measure | " + " | ".join(shown) + " |"]
        out.append("|" + "---|" * (len(shown) + 1))
        for row in with_p99:
            cells = [
                f"{_number(row.contenders[n])} / {_number(row.p99[n])}" if n in row.p99 else "-"
                for n in shown
            ]
            out.append(f"| {row.measure}, {row.size:,} (median / p99, {row.unit}) | "
                       + " | ".join(cells) + " |")
    return "\n".join(out)


def legend(rows: Sequence[Row]) -> str:
    return "\n".join(f"  {name}: {DESCRIPTIONS.get(name, name)}" for name in columns(rows))


def write_json(rows: Sequence[Row], path: Path) -> None:
    path.write_text(json.dumps([row.as_json() for row in rows], indent=2) + "\n")


def read_json(path: Path) -> list[Row]:
    """Rows back from ``results.json`` (to redraw the table or the plot without a run)."""
    rows = []
    for item in json.loads(path.read_text()):
        target = item.get("target")
        rows.append(Row(
            measure=item["measure"],
            size=item["size"],
            unit=item["unit"],
            contenders=item["contenders"],
            higher_is_better=item.get("higher_is_better", False),
            target=None if target is None else float(target.split()[-1]),
            repeats=item.get("repeats", 0),
            p99=item.get("p99", {}),
            notes=item.get("notes", []),
            target_for=item.get("target_for", {}),
            absolute=item.get("absolute", False),
        ))
    return rows


def plot(rows: Sequence[Row], path: Path) -> None:
    """Grouped horizontal bars of every contender's ratio to SQLiteSession (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in columns(rows) if n != BASELINE]
    labeled = [row for row in rows if row.ratios() and not row.absolute]
    height = 0.8 / max(1, len(names))
    figure, axes = plt.subplots(figsize=(11, 1.2 + 0.13 * len(labeled) * max(1, len(names))))
    colors = plt.get_cmap("tab10")
    for index, name in enumerate(names):
        ys, xs = [], []
        for position, row in enumerate(labeled):
            ratio = row.ratios().get(name)
            if ratio is not None and ratio > 0:
                ys.append(position + (index - (len(names) - 1) / 2) * height)
                xs.append(ratio)
        axes.barh(ys, xs, height=height, label=name, color=colors(index))
    axes.axvline(1.0, color="black", linewidth=1)
    for position, row in enumerate(labeled):
        for target in {row.target, *row.target_for.values()} - {None}:
            axes.plot([target, target], [position - 0.45, position + 0.45],
                      color="red", linestyle="--", linewidth=1.2)
    axes.plot([], [], color="red", linestyle="--", label="target")
    axes.set_xscale("log")
    axes.set_yticks(range(len(labeled)))
    axes.set_yticklabels([
        f"{row.measure}\n{row.size:,} ({'higher' if row.higher_is_better else 'lower'} is better"
        + (f", target {_short_target(row)}" if row.has_target else "") + ")"
        for row in labeled
    ], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("ratio to Telethon SQLiteSession (1.0 = same; log scale)")
    axes.set_title("tgsession StorageSession vs Telethon sessions")
    axes.legend(fontsize=7, loc="lower right")
    axes.grid(axis="x", which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
