"""The documentation: the custom-polytope page's code runs, the notebooks execute, the site builds strictly.

The notebooks are executed once per session (``notebook_cache``) and the strict ``mkdocs build``
reuses those executed copies, as ``make test`` does on a fresh clone.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore:Solution may be inaccurate")


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_notebooks_hook", ROOT / "docs" / "hooks" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load_hooks()
NOTEBOOKS = [path.stem for path in hooks.notebook_sources()]


@pytest.fixture(scope="session")
def notebook_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("notebooks")


def python_blocks(page: Path) -> list[str]:
    """The fenced ``python`` code blocks of a markdown page, in order."""
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_the_custom_polytope_page_runs_and_its_structure_gets_every_solver_and_the_layer(capsys):
    blocks = python_blocks(ROOT / "docs" / "custom-polytope.md")
    definition = blocks[0]
    assert len(definition.strip().splitlines()) <= 40, "the page promises a structure in about 30 lines"
    namespace: dict = {}
    exec(compile("\n\n".join(blocks), "docs/custom-polytope.md", "exec"), namespace)
    printed = capsys.readouterr().out
    for solver in ("active-set", "pairwise-frank-wolfe", "away-frank-wolfe", "frank-wolfe", "exact"):
        assert solver in printed
    permutations = namespace["Permutations"]()
    assert not permutations.supports("map_batch") and permutations.supports("constraints")
    # the oracle against brute force, the exact solvers against cvxpy, the layer's gradient
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 4, dtype=torch.float64, generator=generator)
    vertices = torch.from_numpy(permutations.vertices((4, 4)))
    best = vertices[torch.einsum("vij,bij->bv", vertices, x).argmax(dim=1)]
    assert torch.equal(permutations.map(x), best)
    reference = permutations.project(x, solver="cvxpy").x
    for solver in ("active-set", "pairwise-frank-wolfe", "away-frank-wolfe", "exact"):
        result = permutations.project(x, solver=solver)
        assert result.all_success and torch.allclose(result.x, reference, atol=1e-6), solver
    scores = namespace["scores"]
    assert scores.grad is not None and scores.grad[7].abs().sum() == 0  # length 1: one permutation only
    assert torch.allclose(namespace["relaxed"].sum(dim=-2), torch.ones(8, 5, dtype=torch.float64))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_notebook_executes_and_shows_its_figures(name, notebook_cache):
    executed = hooks.execute(hooks.SOURCES / f"{name}.py", notebook_cache)
    notebook = nbformat.read(executed, as_version=4)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure in the executed notebook"
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    # the cache: a second call reuses the executed notebook
    assert hooks.execute(hooks.SOURCES / f"{name}.py", notebook_cache) == executed


def test_the_site_builds_strictly_with_rendered_math_and_notebook_outputs(tmp_path, notebook_cache):
    site = tmp_path / "site"
    env = {**os.environ, hooks.CACHE_ENV: str(notebook_cache), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    pages = {path.relative_to(site).as_posix(): path.read_text() for path in site.rglob("index.html")}
    for page in ("index.html", "concepts/index.html", "custom-polytope/index.html", "solvers/index.html",
                 "benchmarks/index.html", "results/index.html", "api/polytopes/index.html",
                 "api/solvers/index.html", "api/autodiff/index.html", "api/experiments/index.html"):
        assert page in pages, page
    for name in NOTEBOOKS:
        html = pages[f"notebooks/{name}/index.html"]
        assert "data:image/png;base64" in html or "<img" in html, name
    api = pages["api/polytopes/index.html"] + pages["api/solvers/index.html"]
    assert 'class="arithmatex"' in api and ":math:`" not in api and ":class:`" not in api
    assert (site / "javascripts" / "mathjax" / "tex-svg-full.js").is_file()
    external = re.compile(r'<script[^>]*src="https?://')
    assert not [page for page, html in pages.items() if external.search(html)], "a page loads a script from the network"


def test_the_readme_example_runs(capsys):
    (example,) = python_blocks(ROOT / "README.md")
    assert len(example.strip().splitlines()) <= 12
    exec(compile(example, "README.md", "exec"), {})
    assert "tensor" in capsys.readouterr().out
