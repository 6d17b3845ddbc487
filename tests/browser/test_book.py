"""`make book`: the course website builds from the stored outputs, and in headless Chromium every page renders,
its plots load, its internal links resolve, each lesson links its notebook, exercise and Colab, and the search
finds "attention". The site is built into a temporary folder and served on 127.0.0.1 (nothing else is reached).
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest
from browser_support import skip_without_browser

ROOT = Path(__file__).resolve().parents[2]
LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Lessons whose widget outputs were stored before widgets got their readable fallback; re-run them, then
# remove them here.
STALE_WIDGET_OUTPUTS: set[str] = set()     # notebooks stored before the widgets' text fallback (none left)

pytestmark = pytest.mark.browser
skip_without_browser()
if importlib.util.find_spec("myst_nb") is None:
    pytest.skip('the website tools are not installed (pip install -e ".[book]")', allow_module_level=True)

spec = importlib.util.spec_from_file_location("build_book", ROOT / "tools" / "build_book.py")
build_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_book)


class Links(HTMLParser):
    """Every href/src and every id of one HTML page."""

    def __init__(self):
        super().__init__()
        self.targets, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name) and not (tag == "link" and attrs.get("rel") == "preload"):
                self.targets.append(attrs[name])


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built site, served by a local HTTP server: (html folder, base URL)."""
    html = build_book.build(tmp_path_factory.mktemp("book"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield html, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_internal_links_resolve(site):
    html, _ = site
    pages = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts)   # not the theme's templates
    ids = {page: parse(page).ids for page in pages}
    broken = []
    for page in pages:
        for target in parse(page).targets:
            url = urlparse(target)
            if url.scheme or target.startswith(("//", "mailto:", "javascript:")):
                continue                                          # external: GitHub, Colab
            path = (page.parent / unquote(url.path)).resolve() if url.path else page
            if path.is_dir():
                path = path / "index.html"
            if not path.exists():
                broken.append(f"{page.relative_to(html)} -> {target}")
            elif url.fragment and path.suffix == ".html" and url.fragment not in ids.get(path, parse(path).ids):
                broken.append(f"{page.relative_to(html)} -> {target} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:30])


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_each_lesson_links_its_notebook_exercise_and_colab(site, lesson):
    html, _ = site
    page = html / "notebooks" / f"{lesson.stem}.html"
    assert page.exists(), f"no page for {lesson.name}"
    targets = parse(page).targets
    assert build_book.colab_url(f"notebooks/{lesson.name}") in targets
    assert any(t.endswith(f"_downloads/{Path(t).parent.name}/{lesson.name}") for t in targets), "no notebook link"
    exercise = ROOT / "exercises" / lesson.name
    if exercise.exists():
        downloads = [t for t in targets if "_downloads/" in t and t.endswith(lesson.name)]
        assert len(set(downloads)) == 2, f"expected the notebook and its exercise as downloads, got {downloads}"
        assert f"{build_book.REPO_URL}/blob/main/exercises/{lesson.name}" in targets


def test_every_page_renders_with_its_plots(site, browser):
    html, base = site
    pages = ["index.html", "docs/instructors.html"] + [f"notebooks/{p.stem}.html" for p in LESSONS]
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        for path in pages:
            response = page.goto(base + path, wait_until="load")
            assert response.ok, f"{path}: HTTP {response.status}"
            assert page.locator("article h1").count() >= 1, f"{path}: no title"
            images = page.evaluate("""() => Array.from(document.images).map(img => ({
                src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0,
                output: !!img.closest('.cell_output')}))""")
            broken = [i for i in images if not i["ok"]]
            assert not broken, f"{path}: images that do not load: {broken}"
            text = page.locator("article").inner_text()
            if path.startswith("notebooks/"):
                name = Path(path).stem
                nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
                plots = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                            for o in c.outputs)
                shown = sum(i["output"] for i in images)
                assert shown == plots, f"{path}: {plots} stored plots, {shown} shown as images"
                widget_cells = [c for c in nb.cells if c.cell_type == "code" and any(
                    "application/vnd.jupyter.widget-view+json" in o.get("data", {}) and "VBox" in str(o.data)
                    for o in c.outputs)]
                if name not in STALE_WIDGET_OUTPUTS:
                    assert "VBox(children" not in text, f"{path}: a widget shows its repr, not its fallback text"
                    assert not widget_cells or "Run this cell for the interactive" in text, path
        assert not errors, f"JavaScript errors: {errors}"

        page.goto(base + "search.html?q=attention", wait_until="load")
        results = page.locator("#search-results ul.search li, ul.search li")
        results.first.wait_for(timeout=30_000)
        hrefs = [results.nth(i).locator("a").first.get_attribute("href") for i in range(results.count())]
        assert any("notebooks/03_attention.html" in h for h in hrefs), f"search for 'attention' found {hrefs}"
    finally:
        page.close()


def test_the_site_loads_no_script_from_the_internet(site):
    """Offline: every script a page loads (MathJax included) comes from the site itself."""
    html, _ = site
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    external = []
    for page in sorted(p for p in html.rglob("*.html") if "_static" not in p.parts):
        for src in re.findall(r'<script[^>]*\bsrc="([^"]+)"', page.read_text(encoding="utf-8")):
            if urlparse(src).scheme or src.startswith("//"):
                external.append(f"{page.relative_to(html)}: {src}")
    assert not external, "scripts from the internet:\n" + "\n".join(external[:20])
