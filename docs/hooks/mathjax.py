"""MkDocs hook: serve MathJax from the installed ``django-static-mathjax`` wheel; no CDN.

MathJax 3's single-file SVG build (``tex-svg-full.js``, no font files needed) is added to the
site as ``javascripts/mathjax/tex-svg-full.js``, configured by ``docs/javascripts/mathjax.js``.
Notebook pages from mkdocs-jupyter carry ``<script>`` tags that load MathJax 2 and Mermaid
from a CDN; they are removed, so a page never reaches the network (the site-wide MathJax typesets the
notebooks' math too).
"""

from __future__ import annotations

import importlib.resources
import re

from mkdocs.structure.files import File, Files

SITE_PATH = "javascripts/mathjax/tex-svg-full.js"
_EXTERNAL_SCRIPT = re.compile(
    r'<script[^>]*\ssrc="https?://[^"]*"[^>]*>\s*</script>'  # a script loaded from a URL
    r"|<script\b[^>]*>(?:(?!</script>).)*?https?://(?:(?!</script>).)*?</script>",  # or importing one
    flags=re.S,
)


def on_files(files: Files, config) -> Files:
    """Add the MathJax bundle to the site's files."""
    bundle = importlib.resources.files("mathjax") / "static" / "mathjax" / "es5" / "tex-svg-full.js"
    files.append(File.generated(config, SITE_PATH, abs_src_path=str(bundle)))
    return files


def on_post_page(output: str, page, config) -> str:
    """Drop the CDN script tags that notebook pages carry."""
    if "jupyter-wrapper" not in output:
        return output
    return _EXTERNAL_SCRIPT.sub("", output)
