"""MkDocs hook and helpers: execute the jupytext notebooks of ``docs/notebooks/`` and render them.

Each ``docs/notebooks/NAME.py`` (a jupytext percent script) is executed with nbclient on a
kernel that runs this very Python (``sys.executable``, with the repository first on its path),
so no kernel needs registering and nothing is fetched. The executed notebook is cached as
``CACHE/KEY/notebooks/NAME.ipynb``, ``KEY`` a hash of the script and of the library's sources, so a
second build (or the docs test after the notebook test) reuses it. ``CACHE`` is
``$SPIGOT_NOTEBOOK_CACHE`` or ``build/notebooks``. During ``mkdocs build`` the scripts are
replaced by their executed notebooks, which mkdocs-jupyter renders with their outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "docs" / "notebooks"
CACHE_ENV = "SPIGOT_NOTEBOOK_CACHE"
#: Seconds a single cell may run.
CELL_TIMEOUT = 600
KERNEL_NAME = "spigot-python"


def notebook_sources() -> list[Path]:
    """The jupytext scripts, sorted."""
    return sorted(SOURCES.glob("*.py"))


def cache_dir() -> Path:
    """Where executed notebooks are kept."""
    return Path(os.environ.get(CACHE_ENV, ROOT / "build" / "notebooks"))


def cache_key(source: Path) -> str:
    """Hash of the script and of every source file of the library it imports."""
    digest = hashlib.sha256(source.read_bytes())
    for path in sorted((ROOT / "spigot").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _kernel_manager(folder: Path):
    """A kernel manager for a kernel spec that runs ``sys.executable`` with the repository on its path."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = folder / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "spigot-toolkit (this Python)",
        "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(folder / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def execute(source: Path, folder: Path | None = None) -> Path:
    """Execute the script ``source`` (or reuse its cached run); return the executed ``.ipynb``.

    Raises
    ------
    nbclient.exceptions.CellExecutionError
        A cell raised; the message shows the cell and the traceback.
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    folder = cache_dir() if folder is None else folder
    target = folder / cache_key(source) / "notebooks" / f"{source.stem}.ipynb"
    if target.exists():
        return target
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}
    kernel = _kernel_manager(folder)
    client = NotebookClient(
        notebook,
        km=kernel,
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(ROOT)}},
    )
    try:
        client.execute()
    finally:  # the client does not own a kernel manager it was given
        if client.kc is not None:
            client.kc.stop_channels()
        if kernel.has_kernel:
            kernel.shutdown_kernel(now=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    nbformat.write(notebook, partial)
    partial.replace(target)
    return target


@event_priority(100)  # before mkdocs-jupyter claims the .ipynb files
def on_files(files: Files, config) -> Files:
    """Swap every notebook script for its executed notebook."""
    for source in notebook_sources():
        script = files.get_file_from_path(f"notebooks/{source.name}")
        if script is not None:
            files.remove(script)
        executed = execute(source)
        src_dir = executed.parent.parent  # so that the page's path is notebooks/NAME.ipynb
        files.append(File(f"notebooks/{executed.name}", str(src_dir), config["site_dir"], config["use_directory_urls"]))
    return files
