"""The lessons as a website (tools/build_site.py): built offline and strictly, every lesson a page,
links that work, and two pages looked at in a real browser (Chromium, driven by Playwright)."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_site  # noqa: E402
import teaching_guide  # noqa: E402

NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built site: the one CI built before the tests (TLHELPERS_SITE), or built here."""
    prebuilt = os.environ.get("TLHELPERS_SITE")
    if prebuilt:
        return Path(prebuilt)
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "tools/build_site.py", "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_every_lesson_the_guide_the_data_and_the_api_are_pages(site):
    assert "Transfer learning with Keras 3" in (site / "index.html").read_text()
    for name in NOTEBOOKS:
        html = (site / "notebooks" / name / "index.html").read_text()
        assert f"colab.research.google.com/github/tlhelpers/transfer-learning-keras/blob/v0.2.0/notebooks/{name}.ipynb" in html
        assert html.count("data:image/") >= 1, f"{name}: no figure rendered"  # outputs inlined as images
        assert "import tlhelpers as tl" in re.sub(r"<[^>]+>", "", html), f"{name}: its code is not on the page"
    assert "Three ready schedules" in (site / "docs" / "teaching" / "index.html").read_text()
    assert "cats_and_dogs_filtered" in (site / "data" / "index.html").read_text()
    api = (site / "docs" / "api" / "index.html").read_text()
    assert "load_splits" in api and "Training, validation and test sets of a dataset" in api  # from the docstring


def test_links_to_pages_stay_inside_the_site_and_other_files_go_to_github():
    url = build_site.release_url()
    text = (
        "[lesson](notebooks/02_feature_extraction.ipynb), [kit](tlhelpers/kit/__init__.py), [web](https://keras.io), [here](#top)"
    )
    out = build_site.rewrite_links(text, "README.md", url)
    assert "(notebooks/02_feature_extraction.ipynb)" in out and f"({url}/tlhelpers/kit/__init__.py)" in out
    assert "(https://keras.io)" in out and "(#top)" in out
    # from a page one folder down, the front page is index.md and other pages are relative to it
    back = build_site.rewrite_links(
        "[home](../README.md) [lesson](../notebooks/03_fine_tuning.ipynb#exercises)", "docs/teaching.md", url
    )
    assert back == "[home](../index.md) [lesson](../notebooks/03_fine_tuning.ipynb#exercises)"


def test_a_broken_link_fails_the_build(tmp_path):
    """Strict mode: a link to a page that does not exist stops the build with the link's name."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.md").write_text("# Home\n\n[a lesson that is not there](notebooks/99_missing.ipynb)\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        "site_name: t\ndocs_dir: src\nstrict: true\nvalidation:\n  links:\n    not_found: warn\n"
        + re.search(r"^theme:\n(?:  .*\n)+", (ROOT / "mkdocs.yml").read_text(), re.M)[0]
    )
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "99_missing.ipynb" in done.stdout + done.stderr
    assert "strict: true" in (ROOT / "mkdocs.yml").read_text()  # the real site is built the same way


def test_the_teaching_guide_is_what_the_measurements_give():
    assert teaching_guide.main(["--check"]) == 0, "run python tools/teaching_guide.py"


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (CI installs Debian's chromium)")
def test_two_pages_show_their_figures_and_code_in_a_browser(site):
    from playwright.sync_api import sync_playwright

    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
            page = browser.new_page()
            for path, code in (
                ("notebooks/02_feature_extraction/", "tl.load_splits"),
                ("notebooks/05_predictions_and_evaluation/", "tl.grad_cam"),
            ):
                page.goto(f"{base}/{path}", wait_until="load")
                figures = page.locator("img[src^='data:image']")
                assert figures.count() >= 3, path
                decoded = page.evaluate(
                    "() => [...document.images].filter(i => i.src.startsWith('data:image'))"
                    ".map(i => i.complete && i.naturalWidth > 100)"
                )
                assert decoded and all(decoded), f"{path}: a figure did not decode in the browser"
                cells = page.locator(".jp-CodeCell")
                assert cells.count() >= 10, path
                assert code in page.inner_text("body")
                assert page.locator("a[href*='colab.research.google.com']").count() >= 1
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
