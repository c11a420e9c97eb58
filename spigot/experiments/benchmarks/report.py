"""``docs/benchmarks.md``: its header and one marked block per section, rewritten in place.

Each section sits between ``<!-- bench:NAME:begin -->`` and ``<!-- bench:NAME:end -->``;
:func:`update_benchmarks_file` replaces the sections it is given and keeps the others (a run of
one section leaves the rest of the file as it was; a CPU run never touches the GPU block). A
hand-written note on a section (a run-to-run spread, a profile: figures no single run
produces) sits between ``<!-- note:NAME:begin -->`` and ``<!-- note:NAME:end -->`` and is kept,
right after its section, whatever is rerun. Other text outside the markers is replaced by
:data:`HEADER`; a section never measured yet holds its :data:`PLACEHOLDERS` text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

HEADER = """# Benchmarks

The CPU sections were measured on this project's reference machine (2 CPU cores shared with
other jobs, no GPU) by the command named in each; `spigot bench --output docs/benchmarks.md`
regenerates them (`--only simplex` one section; without `--output` it only prints the ratios).
The GPU section is measured by `spigot bench --device cuda --output docs/benchmarks.md` on a
machine with a CUDA GPU and names that GPU. Ratios compare
implementations measured in the same run (on the same device), in interleaved rounds; absolute
times drift with machine load, ratios much less."""

#: What a section's block holds until it is first measured (a statement, not a figure).
PLACEHOLDERS: dict[str, str] = {
    "gpu": """## GPU

Not measured yet: no GPU has been available in this project's sessions so far, so this page
holds no GPU figure. On a machine with a CUDA GPU, run `spigot bench --device cuda --only gpu`;
it times, with CUDA events and against the peers on the same GPU in the same run, the batched
simplex projection (B=4096, k=1000, float32; against entmax `sparsemax`, a plain sort-based
projection and a read+write copy of the data; goal: at most 100 us) and the SPIGOT step on
arborescences (B=32, n=50; against torch-struct's `NonProjectiveDependencyCRF` marginals forward
and backward; goal: at most 0.5x), and replaces this paragraph with its table, naming the GPU.""",
}


def _markers(name: str, kind: str = "bench") -> tuple[str, str]:
    return f"<!-- {kind}:{name}:begin -->", f"<!-- {kind}:{name}:end -->"


def read_sections(text: str, kind: str = "bench") -> dict[str, str]:
    """The marked sections (``kind="note"``: the notes) of a benchmarks file, by name, in file order."""
    found = re.finditer(rf"<!-- {kind}:([\w-]+):begin -->\n(.*?)\n<!-- {kind}:\1:end -->", text, flags=re.S)
    return {match.group(1): match.group(2) for match in found}


def update_benchmarks_file(
    path: str | Path,
    sections: Mapping[str, str],
    order: Sequence[str],
    placeholders: Mapping[str, str] = PLACEHOLDERS,
) -> str:
    """Write ``sections`` (name -> markdown) into the file at ``path``; return the new text.

    Sections are laid out in ``order``; a section of the old file that is not given is kept; a
    section in neither gets its text from ``placeholders`` when there is one (the GPU section's
    "not measured yet"); names outside ``order`` are refused. The old file's notes follow their
    sections unchanged (a note on a name outside ``order`` is dropped).
    """
    unknown = sorted(set(sections) - set(order))
    if unknown:
        raise ValueError(f"unknown benchmark section(s) {unknown}; known: {list(order)}")
    path = Path(path)
    old_text = path.read_text() if path.exists() else ""
    old, notes = read_sections(old_text), read_sections(old_text, "note")
    merged = {name: sections.get(name, old.get(name, placeholders.get(name))) for name in order}
    blocks = [HEADER]
    for name, body in merged.items():
        if body is not None:
            begin, end = _markers(name)
            blocks.append(f"{begin}\n{body.strip()}\n{end}")
        if name in notes:
            begin, end = _markers(name, "note")
            blocks.append(f"{begin}\n{notes[name].strip()}\n{end}")
    text = "\n\n".join(blocks) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
