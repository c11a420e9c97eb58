"""``docs/benchmarks.md``: its header and one marked block per section, rewritten in place.

Each section sits between ``<!-- bench:NAME:begin -->`` and ``<!-- bench:NAME:end -->``;
:func:`update_benchmarks_file` replaces the sections it is given and keeps the others (a run of
one section leaves the rest of the file as it was). Text outside the markers is replaced by
:data:`HEADER`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

HEADER = """# Benchmarks

Every figure below was measured on this project's reference machine (2 CPU cores shared with
other jobs, no GPU) by the command named in its section; `spigot bench` regenerates the whole
page (`spigot bench --only NAME` one section). Ratios compare two implementations measured in
the same run, in interleaved rounds; absolute times drift with machine load, ratios much less."""


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def read_sections(text: str) -> dict[str, str]:
    """The marked sections of a benchmarks file, by name, in file order."""
    found = re.finditer(r"<!-- bench:([\w-]+):begin -->\n(.*?)\n<!-- bench:\1:end -->", text, flags=re.S)
    return {match.group(1): match.group(2) for match in found}


def update_benchmarks_file(path: str | Path, sections: Mapping[str, str], order: Sequence[str]) -> str:
    """Write ``sections`` (name -> markdown) into the file at ``path``; return the new text.

    Sections are laid out in ``order``; a section of the old file that is not given is kept;
    names outside ``order`` are refused.
    """
    unknown = sorted(set(sections) - set(order))
    if unknown:
        raise ValueError(f"unknown benchmark section(s) {unknown}; known: {list(order)}")
    path = Path(path)
    old = read_sections(path.read_text()) if path.exists() else {}
    merged = {name: sections.get(name, old.get(name)) for name in order}
    blocks = [HEADER]
    for name, body in merged.items():
        if body is not None:
            begin, end = _markers(name)
            blocks.append(f"{begin}\n{body.strip()}\n{end}")
    text = "\n\n".join(blocks) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
