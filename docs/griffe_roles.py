"""A griffe extension: render tgsession's reST-flavoured docstrings as Markdown.

The docstrings are read by ``help()`` as much as by the site, so they keep their
reST habits; this turns them into Markdown when the reference is built:

- ``:class:`~tgsession.X```, ``:func:``, ``:meth:``, ``:attr:``, ``:data:``, ``:exc:``,
  ``:mod:`` roles become cross-references (links when the target has a reference
  entry, plain code otherwise);
- ``Example::`` followed by an indented block becomes a fenced Python block;
- ``>>>`` lines become a ``pycon`` block;
- a reST simple table (``===  ===`` borders) becomes a Markdown table.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(class|func|meth|attr|data|exc|mod|obj):`(~?)([^`<>]+?)(?:\s*<([^`>]+)>)?`"
)
_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")


class ReSTRoles(griffe.Extension):
    """Rewrite every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        seen: set[int] = set()
        self._walk(pkg, loader, seen)

    def _walk(self, obj: griffe.Object, loader: griffe.GriffeLoader, seen: set[int]) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.docstring is not None:
            docstring = obj.docstring
            docstring.value = to_markdown(docstring.value, lambda n: _resolve(obj, n, loader))
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, loader, seen)  # type: ignore[arg-type]


def _resolve(scope: griffe.Object, name: str, loader: griffe.GriffeLoader) -> str | None:
    """The canonical path of ``name`` as seen from ``scope``, or None when unknown."""
    name = name.strip().rstrip("()")
    candidates = [name]
    if not name.startswith("tgsession"):
        head, _, tail = name.partition(".")
        # An unresolvable name is shown as plain code, not an error.
        with contextlib.suppress(Exception):
            candidates.insert(0, scope.resolve(head) + (f".{tail}" if tail else ""))
        # A method's docstring naming a sibling (``:meth:`from_url```).
        parent = scope.parent
        while parent is not None:
            candidates.append(f"{parent.path}.{name}")
            parent = parent.parent
    for candidate in candidates:
        try:
            target = loader.modules_collection[candidate]
        except Exception:
            continue
        try:
            target = target.final_target if target.is_alias else target
        except Exception:
            return candidate
        leaf = name.rsplit(".", 1)[-1]
        if target.is_module and leaf in target.members:  # a function shadowing its module
            target = target.members[leaf]
            target = target.final_target if target.is_alias else target
        return target.path
    return None


def to_markdown(text: str, resolve: Any) -> str:
    # Blocks first: a table's columns are found by position, before roles change widths.
    return _ROLE.sub(lambda m: _role(m, resolve), _blocks(text))


def _blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i].strip())
                i += 1
            out += ["```pycon", *block, "```"]
            continue
        if _BORDER.match(line) and _is_simple_table(lines, i):
            i = _table(lines, i, out)
            continue
        if stripped.endswith("::"):
            lead = line.rstrip()[:-2].rstrip()
            if lead:
                out.append(lead + ":")
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["", "```python", *textwrap.dedent("\n".join(block)).splitlines(), "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _role(match: re.Match[str], resolve: Any) -> str:
    role, short, name, explicit = match.groups()
    target = (explicit or name).strip()
    shown = name.strip() if explicit else target
    if short:
        shown = shown.rsplit(".", 1)[-1]
    if role in ("func", "meth") and not shown.endswith(")"):
        shown += "()"
    path = resolve(target)
    if path is None:
        return f"`{shown}`"
    return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'


def _is_simple_table(lines: list[str], i: int) -> bool:
    rest = [j for j in range(i + 1, len(lines)) if _BORDER.match(lines[j])]
    return len(rest) >= 2


def _table(lines: list[str], i: int, out: list[str]) -> int:
    border = lines[i]
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]

    def cells(row: str) -> list[str]:
        parts = []
        for n, (start, _end) in enumerate(spans):
            stop = spans[n + 1][0] if n + 1 < len(spans) else None
            parts.append(row[start:stop].strip())
        return parts

    header = cells(lines[i + 1])
    out += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    j = i + 3
    while j < len(lines) and not _BORDER.match(lines[j]):
        if lines[j].strip():
            out.append("| " + " | ".join(cells(lines[j])) + " |")
        j += 1
    out.append("")
    return j + 1
