"""Build the lessons as a static website: ``python tools/build_site.py`` (into ``site/``).

    python tools/build_site.py           # build site/ (strict: a broken link or a page that does not render fails)
    python tools/build_site.py --serve   # build, then preview at http://127.0.0.1:8000 while editing

The pages come from the repository as it is: the README is the front page, each committed
notebook (with its outputs, not re-run) a page with its "Open in Colab" badge, then the
teacher's guide, the data cards, the benchmark notes and the API reference generated from
the docstrings (``docs/api.md``). They are gathered into ``build/site-src`` in the
repository's own layout, so that the links between them work as they do on GitHub; a link
to any other file of the repository (the LICENSE, a module) becomes a link to that file on
GitHub at the release tag. MkDocs (Material theme, mkdocs-jupyter, mkdocstrings) then builds
``site/``, offline.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGING = ROOT / "build" / "site-src"
#: Repository file -> its page in the site (the README is the front page).
PAGES = {
    "README.md": "index.md",
    "docs/teaching.md": "docs/teaching.md",
    "docs/api.md": "docs/api.md",
    "data/README.md": "data/README.md",
    "benchmarks/README.md": "benchmarks/README.md",
    **{f"notebooks/{p.name}": f"notebooks/{p.name}" for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))},
}
_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def release_url() -> str:
    """The repository's address at the release tag, from pyproject.toml and tlhelpers.__version__."""
    repository = re.search(r'^Repository = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    version = re.search(r'^__version__ = "([^"]+)"$', (ROOT / "tlhelpers" / "__init__.py").read_text(), re.M)[1]
    return f"{repository}/blob/v{version}"


def rewrite_links(text: str, source: str, url: str) -> str:
    """Links of the page ``source`` (a repository path), made right for the site.

    A link to another page is pointed at that page; a link to any other file of the
    repository becomes a link to it on GitHub; web links and anchors are left alone.
    """
    here = posixpath.dirname(PAGES[source])

    def fix(match: re.Match) -> str:
        target = match[2]
        if re.match(r"^([a-z]+:|#|/)", target):
            return match[0]
        path, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        if resolved in PAGES:
            new = posixpath.relpath(PAGES[resolved], here or ".")
        elif (ROOT / resolved).exists():
            new = f"{url}/{resolved}"
        else:
            return match[0]  # MkDocs reports it as broken
        return f"{match[1]}{new}{'#' + anchor if anchor else ''}{match[3]}"

    return _LINK.sub(fix, text)


def stage() -> Path:
    """Gather the pages into build/site-src, their links rewritten; returns the folder."""
    shutil.rmtree(STAGING, ignore_errors=True)
    url = release_url()
    for source, page in PAGES.items():
        target = STAGING / page
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.endswith(".ipynb"):
            import nbformat

            nb = nbformat.read(ROOT / source, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "markdown":
                    cell.source = rewrite_links(cell.source, source, url)
            nbformat.write(nb, target)
        else:
            target.write_text(rewrite_links((ROOT / source).read_text(), source, url))
    return STAGING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="preview at http://127.0.0.1:8000 after building")
    parser.add_argument("--site-dir", default=str(ROOT / "site"), help="where to build (default: site/)")
    args = parser.parse_args(argv)
    stage()
    command = [sys.executable, "-m", "mkdocs", "serve" if args.serve else "build", "--config-file", str(ROOT / "mkdocs.yml")]
    if not args.serve:
        command += ["--site-dir", args.site_dir, "--quiet"]
    # Material 9.7 prints a banner about its successor on every build; the build's own messages still show.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
