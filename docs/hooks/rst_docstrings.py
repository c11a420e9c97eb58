"""Griffe extension: the library's reST markup in docstrings, rewritten as Markdown for mkdocstrings.

The docstrings are numpy style with reST inline markup (``:math:`...```, ``.. math::``,
``:class:`~spigot.X```, double-backquoted literals), which Sphinx understands and Markdown does
not. Once a package is loaded, every docstring is rewritten:

- ``:math:`x``` -> ``\\(x\\)`` and ``.. math:: x`` blocks -> ``$$ x $$`` (arithmatex, MathJax);
- ``:class:`~a.b.C```, ``:func:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``, ``:exc:`` ->
  optional cross-references (a link where the target is documented, plain code otherwise);
  names without a dot are resolved in the docstring's own scope;
- ````code```` -> ```code```;
- reST simple tables (``===  ===`` rules) -> Markdown tables.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_RULE = re.compile(r"^(\s*)(=+)(\s+=+)+\s*$")


def _math_blocks(text: str) -> str:
    """``.. math:: expr`` (continued by indented lines) -> a ``$$`` display block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)\.\. math::\s*(.*)$", lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, body = match.group(1), [match.group(2)] if match.group(2).strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            if lines[i].strip():
                body.append(lines[i].strip())
            elif body and i + 1 < len(lines) and len(lines[i + 1]) - len(lines[i + 1].lstrip()) <= len(indent):
                break
            i += 1
        out += [f"{indent}$$", *(f"{indent}{line}" for line in body), f"{indent}$$", ""]
    return "\n".join(out)


def _tables(text: str) -> str:
    """reST simple tables (a rule, a header row, a rule, rows, a rule) -> Markdown tables."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        rule = _RULE.match(lines[i])
        if not rule or i + 2 >= len(lines) or not _RULE.match(lines[i + 2]):
            out.append(lines[i])
            i += 1
            continue
        spans = [(m.start(), m.end()) for m in re.finditer(r"=+", lines[i])]
        end = i + 3
        while end < len(lines) and not _RULE.match(lines[end]):
            end += 1
        rows = [lines[i + 1], *lines[i + 3 : end]]

        def cells(row: str) -> list[str]:
            bounds = [start for start, _ in spans] + [max(len(row), spans[-1][1])]
            return [row[a:b].strip().replace("|", "\\|") for a, b in zip(bounds, bounds[1:])]

        out.append("| " + " | ".join(cells(rows[0])) + " |")
        out.append("|" + "---|" * len(spans))
        out += ["| " + " | ".join(cells(row)) + " |" for row in rows[1:] if row.strip()]
        i = end + 1
    return "\n".join(out)


def _reference(obj: griffe.Object, target: str, short: bool) -> str:
    """An optional autorefs cross-reference to ``target`` resolved from ``obj``'s scope."""
    path = target.strip().lstrip(".").removesuffix("()")
    head, _, rest = path.partition(".")
    try:
        full = obj.resolve(head) + (f".{rest}" if rest else "")
    except Exception:  # noqa: BLE001 - any failure leaves the name as written
        full = path
    title = path.rsplit(".", 1)[-1] if short else path
    return f'<autoref identifier="{html.escape(full)}" optional><code>{html.escape(title)}</code></autoref>'


def convert(text: str, obj: griffe.Object) -> str:
    """The Markdown form of the reST docstring ``text`` of ``obj``."""
    text = _tables(_math_blocks(text))
    text = _MATH_ROLE.sub(lambda m: "\\(" + m.group(1) + "\\)", text)
    text = _ROLE.sub(lambda m: _reference(obj, m.group(3), short=m.group(2) == "~"), text)
    return _LITERAL.sub(lambda m: "`" + m.group(1) + "`", text)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring of a loaded package from reST markup to Markdown (see the module)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Convert the docstrings of ``pkg`` and of every object inside it, once."""
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)

        visit(pkg)
