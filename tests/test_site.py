"""The built site, as a reader's browser sees it, with no network.

The site in ``_build/html`` (``make test`` builds it first; if it is missing the fixture builds it, with
warnings as errors) is served on 127.0.0.1 and opened in Debian's headless chromium through playwright.
Every request that would leave 127.0.0.1 is recorded and aborted. For every page in ``_toc.yml``: it loads
with HTTP 200, without console errors, page errors or failed requests; MathJax has rendered every formula and
no raw TeX is left; every image has loaded; a notebook page has a Colab link to its own ``.ipynb`` under the
repository URL of ``_config.yml``; a page with a widget gets the widget manager from the site itself.
A static scan checks that no built HTML page or stylesheet loads anything from another host.

What a reader meets: the chapter numbers in the sidebar and in each page's title agree with the file names
(``book/04_*`` is chapter 4); the first thing on every page is its title (the Colab set-up cell is removed
from the site); no output area is a blank space (taller than 40 px with nothing visible in it). A screenshot
of every page's first screen is saved in ``_build/screenshots/`` (next to the site; ignored by git) to look at.

``RLHF_COURSE_SITE`` names another built site (its ``html`` folder), e.g. a private build made with
``jupyter-book build . --path-output /tmp/x``: ``RLHF_COURSE_SITE=/tmp/x/_build/html``.
"""
from __future__ import annotations

import functools
import html.parser
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import yaml
from sphinx_external_toc.parsing import parse_toc_yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("RLHF_COURSE_SITE") or ROOT / "_build" / "html").resolve()
SCREENSHOTS = SITE.parent / "screenshots"   # _build/ is in .gitignore
BLANK_OUTPUT_PX = 40                        # an output area this tall must show something
CHROMIUM = Path("/usr/bin/chromium")
# Launch flags that work on the project's machines (TOOLCHAIN.md, "A real browser").
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
LOAD_TIMEOUT_MS = 60_000   # a page with MathJax and the 3.6 MB widget manager, on a busy 2-core machine
LOCAL_HOSTS = {"127.0.0.1"}
SOURCE_SUFFIXES = (".ipynb", ".md")
# Markers of TeX that MathJax did not typeset, looked for in the page's text outside code and rendered math.
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$")


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_pages() -> list[tuple[str, Path]]:
    """(docname, source file) for every page of ``_toc.yml``, root first, parsed as Jupyter Book does."""
    pages = []
    for docname in parse_toc_yaml(ROOT / "_toc.yml"):
        found = [ROOT / f"{docname}{s}" for s in SOURCE_SUFFIXES if (ROOT / f"{docname}{s}").is_file()]
        pages.append((docname, found[0] if found else ROOT / docname))
    return pages


PAGES = _toc_pages()


def _toc_numbers() -> dict[str, str]:
    """docname -> the number the build gives its page, from the numbered part of ``_toc.yml``: "4" for a
    chapter; "3.*" for a page in a chapter's ``sections`` (Sphinx numbers it after the chapter's own sections,
    so only its chapter part is fixed)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    numbers: dict[str, str] = {}

    def walk(entries, prefix):
        for i, entry in enumerate(entries or [], 1):
            number = f"{prefix}{i}" if not prefix else f"{prefix}*"
            if "file" in entry:
                numbers[str(entry["file"]).removesuffix(".ipynb").removesuffix(".md")] = number
            walk(entry.get("sections"), f"{number}.")

    numbered = [part for part in toc.get("parts", []) if part.get("numbered")]
    assert len(numbered) <= 1, "more than one numbered part: each toctree would count from 1 again"
    for part in numbered:
        walk(part.get("chapters"), "")
    return numbers


CHAPTER_NUMBERS = _toc_numbers()


def colab_link(docname: str) -> str:
    """The Colab launch URL a notebook page must carry, from ``_config.yml``'s repository and launch buttons."""
    cfg = _config()
    repo = cfg["repository"]
    url = repo["url"].rstrip("/")
    assert url.startswith("https://github.com/"), f"repository.url must be a GitHub URL for Colab, got {url}"
    colab = cfg["launch_buttons"]["colab_url"].rstrip("/")
    path = "/".join(p for p in (str(repo.get("path_to_book") or "").strip("/"), f"{docname}.ipynb") if p)
    return f"{colab}/github/{url.removeprefix('https://github.com/')}/blob/{repo.get('branch', 'main')}/{path}"


def _is_remote(url: str) -> bool:
    """Whether loading ``url`` (absolute, or relative to a page on 127.0.0.1) would leave this machine."""
    parts = urlsplit(url.strip())
    if parts.scheme in ("data", "blob", "about", "javascript"):
        return False
    if parts.scheme or url.strip().startswith("//"):
        return parts.hostname not in LOCAL_HOSTS
    return False


# --- fixtures -----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def site() -> Path:
    """The built site; built here (``jupyter-book build . -W``) when ``make`` has not built it already."""
    if not (SITE / "index.html").is_file():
        assert not os.environ.get("RLHF_COURSE_SITE"), f"RLHF_COURSE_SITE={SITE} has no index.html"
        exe = Path(sys.executable).with_name("jupyter-book")
        cmd = [str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book"),
               "build", str(ROOT), "-W"]
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
        assert run.returncode == 0 and (SITE / "index.html").is_file(), (
            f"building the site failed ({' '.join(cmd)}):\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}")
    return SITE


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


@pytest.fixture(scope="session")
def server(site):
    """Base URL of the site served on 127.0.0.1, on a free port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    """Headless Debian chromium with a fresh profile (never a browser downloaded by playwright).

    Module-scoped: the browser closes when this file's tests are done, before the notebooks run."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run `make browser` (Debian's chromium package)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900}, service_workers="block")
        context.set_default_timeout(LOAD_TIMEOUT_MS)
        yield context
        context.close()


class PageVisit:
    """One page opened in the browser, with everything it asked for and everything that went wrong."""

    def __init__(self, context, url: str):
        self.url = url
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.offsite: list[str] = []
        self.failed: list[str] = []
        self.requested: dict[str, int | None] = {}
        page = self.page = context.new_page()
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(
            f"{m.text} ({m.location.get('url', '')}:{m.location.get('lineNumber', '')})"))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}")
                if not _is_remote(r.url) else None)
        page.on("response", self._response)
        page.route("**/*", self._route)
        self.response = page.goto(url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
        self._wait_for_mathjax()

    def _route(self, route):
        url = route.request.url
        if _is_remote(url):
            self.offsite.append(url)
            route.abort()
        else:
            route.continue_()

    def _response(self, response):
        self.requested[response.url] = response.status
        if response.status >= 400:
            self.failed.append(f"{response.url}: HTTP {response.status}")

    def _wait_for_mathjax(self):
        """Wait until MathJax has typeset the page; on failure record why (``mathjax_error``), fast."""
        from playwright.sync_api import Error as PlaywrightError

        self.mathjax_error = None
        srcs = self.page.eval_on_selector_all("script[src*='mathjax']", "ss => ss.map(s => s.src)")
        if not srcs:
            return
        bad = [s for s in srcs if _is_remote(s) or self.requested.get(s) != 200]
        if bad:  # aborted or missing: it will never start, so do not wait for it
            self.mathjax_error = f"MathJax script not loaded from the site: {bad}"
            return
        try:
            self.page.wait_for_function(
                "() => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise",
                timeout=LOAD_TIMEOUT_MS)
            self.page.evaluate("() => window.MathJax.startup.promise")
        except PlaywrightError as exc:
            self.mathjax_error = f"MathJax did not finish typesetting: {exc}"

    def close(self):
        self.page.close()


@pytest.fixture(scope="module")
def visit(browser_context, server):
    """Open a page of the site (by docname), once per module."""
    visits: dict[str, PageVisit | str] = {}

    def open_page(docname: str) -> PageVisit:
        if docname not in visits:
            try:
                visits[docname] = PageVisit(browser_context, urljoin(server, f"{docname}.html"))
            except Exception as exc:  # remembered, so later tests of the page fail at once, not by timeout
                visits[docname] = f"{type(exc).__name__}: {exc}"
        v = visits[docname]
        if isinstance(v, str):
            pytest.fail(f"{docname}: the page could not be opened: {v}")
        return v

    yield open_page
    for v in visits.values():
        if not isinstance(v, str):
            v.close()


# --- the pages of the table of contents ------------------------------------------------------------------

def test_toc_lists_pages():
    assert PAGES, "_toc.yml lists no pages"
    missing = [str(src.relative_to(ROOT)) for _, src in PAGES if not src.is_file()]
    assert not missing, f"pages in _toc.yml without a source file: {missing}"


@pytest.mark.parametrize("docname", [d for d, _ in PAGES])
def test_page_loads_offline_without_errors(visit, docname):
    v = visit(docname)
    assert v.response is not None and v.response.status == 200, f"{v.url}: HTTP {v.response and v.response.status}"
    assert not v.offsite, f"{docname}: requests that would leave 127.0.0.1 (aborted): {v.offsite}"
    assert not v.failed, f"{docname}: failed requests: {v.failed}"
    assert not v.page_errors, f"{docname}: uncaught JavaScript errors: {v.page_errors}"
    assert not v.console_errors, f"{docname}: console errors: {v.console_errors}"


_MATH_STATE = """() => {
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "MJX-CONTAINER", "NOSCRIPT"]);
  const texts = [];
  const walker = document.createTreeWalker(document.querySelector("main") || document.body,
                                           NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    let p = n.parentElement, inside = false;
    for (; p; p = p.parentElement) { if (skip.has(p.tagName) || p.classList.contains("highlight")) { inside = true; break; } }
    if (!inside) texts.push(n.textContent);
  }
  return {
    math: document.querySelectorAll(".math").length,
    rendered: document.querySelectorAll("mjx-container").length,
    errors: Array.from(document.querySelectorAll("mjx-merror")).map(e => e.getAttribute("data-mjx-error") || e.textContent),
    text: texts.join(" "),
  };
}"""


@pytest.mark.parametrize("docname", [d for d, _ in PAGES])
def test_math_is_rendered(visit, docname):
    v = visit(docname)
    assert v.mathjax_error is None, f"{docname}: {v.mathjax_error}"
    state = v.page.evaluate(_MATH_STATE)
    if state["math"]:
        assert visit(docname).page.locator("script[src*='_static/mathjax/']").count(), (
            f"{docname} has math but does not load MathJax from the site's own _static/mathjax/")
        assert state["rendered"] >= state["math"], (
            f"{docname}: {state['math']} formulas but only {state['rendered']} rendered by MathJax")
    assert not state["errors"], f"{docname}: MathJax could not typeset: {state['errors']}"
    raw = sorted({m.group(0)[:80] for m in RAW_TEX.finditer(state["text"])})
    assert not raw, f"{docname}: raw TeX left in the page's text: {raw}"


_IMAGES = """async () => {
  const imgs = Array.from(document.images);
  for (const i of imgs) i.loading = "eager";
  await Promise.all(imgs.map(i => i.complete && i.naturalWidth ? null : i.decode().catch(() => null)));
  return imgs.map(i => ({src: i.currentSrc || i.src, width: i.naturalWidth}));
}"""


@pytest.mark.parametrize("docname", [d for d, _ in PAGES])
def test_images_load(visit, docname):
    images = visit(docname).page.evaluate(_IMAGES)
    broken = [i["src"] for i in images if not i["width"]]
    assert not broken, f"{docname}: images that did not load: {broken}"


NOTEBOOK_PAGES = [d for d, src in PAGES if src.suffix == ".ipynb"]


# --- what a reader meets: numbers that agree, the title first, no blank space --------------------------

def test_chapter_numbers_agree_with_file_names():
    """``book/04_x`` is chapter 4 in the sidebar: a page whose file name does not start with its chapter's
    number (``03b_case_studies``) must be a section of that chapter, not a chapter of its own."""
    assert CHAPTER_NUMBERS, "_toc.yml has no numbered part"
    wrong = []
    for doc, number in CHAPTER_NUMBERS.items():
        m = re.match(r"(\d+)([a-z]*)_", Path(doc).name)
        if not m:
            continue
        chapter = number.split(".")[0]
        if int(m.group(1)) != int(chapter) or (m.group(2) and "." not in number) or (
                not m.group(2) and "." in number):
            wrong.append(f"{doc} is numbered {number}")
    assert not wrong, f"chapter numbers that disagree with the file names: {wrong}"


def _shows_number(text: str, number: str) -> bool:
    """Whether a title as printed ("4. The optimal policy", "3.9. Case studies") carries ``number``."""
    pattern = re.escape(number).replace(r"\*", r"\d+") + r"\. "
    return re.match(pattern, text) is not None


_SIDEBAR = """() => Array.from(document.querySelectorAll("nav.bd-links a.reference.internal, .bd-sidebar a.reference"))
  .map(a => ({href: a.getAttribute("href"), text: a.textContent.trim()}))"""


def test_sidebar_and_titles_show_the_chapter_numbers(visit):
    """The numbers the build prints (sidebar links, each page's title) are those of _toc.yml."""
    links = visit(PAGES[0][0]).page.evaluate(_SIDEBAR)
    wrong, seen = [], set()
    for link in links:
        doc = "book/" + link["href"].split("#")[0].removesuffix(".html").lstrip("./").removeprefix("book/")
        if doc in CHAPTER_NUMBERS and "#" not in link["href"]:
            seen.add(doc)
            if not _shows_number(link["text"], CHAPTER_NUMBERS[doc]):
                wrong.append(f"sidebar: {link['text']!r} should be number {CHAPTER_NUMBERS[doc]}")
    missing = sorted(set(CHAPTER_NUMBERS) - seen)
    assert not missing, f"numbered pages missing from the sidebar of the root page: {missing}; links: {links}"
    for doc, number in CHAPTER_NUMBERS.items():
        # The article's h1 (the theme also prints a bare title for print media, before it).
        title = visit(doc).page.eval_on_selector("article.bd-article h1", "h => h.textContent.trim()")
        if not _shows_number(title, number):
            wrong.append(f"{doc}: title {title!r} should be number {number}")
    assert not wrong, "\n".join(wrong)


_FIRST_THING = """() => {
  const root = document.querySelector("article.bd-article") || document.querySelector("main");
  const sel = "h1, h2, p, div.cell, pre, img, table, ul, ol, figure, div.admonition, div.proof";
  const first = Array.from(root.querySelectorAll(sel)).find(e => e.getClientRects().length > 0);
  return first ? {tag: first.tagName, cls: first.className, text: first.textContent.trim().slice(0, 120)}
               : null;
}"""


@pytest.mark.parametrize("docname", [d for d, _ in PAGES])
def test_page_opens_with_its_title(visit, docname):
    """No set-up cell (or anything else) above the title; the first screen is saved for a person to look at."""
    v = visit(docname)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{docname.replace('/', '__')}.png"
    v.page.evaluate("() => window.scrollTo(0, 0)")
    v.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 1000, f"{docname}: the screenshot {shot} is empty"
    first = v.page.evaluate(_FIRST_THING)
    assert first is not None, f"{docname}: nothing visible in the page's article"
    assert first["tag"] == "H1", f"{docname}: the page opens with {first}, not with its title"


_BLANK_OUTPUTS = """(limit) => {
  const media = "img, svg, canvas, video, iframe, input, select, button, textarea, mjx-container, table";
  const bad = [];
  for (const e of document.querySelectorAll("div.cell_output, div.cell_output > *")) {
    const r = e.getBoundingClientRect();
    if (r.height <= limit) continue;
    if ((e.innerText || "").trim() || e.matches(media) || e.querySelector(media)) continue;
    bad.push({cls: e.className, height: Math.round(r.height), html: e.outerHTML.slice(0, 240)});
  }
  return bad;
}"""


@pytest.mark.parametrize("docname", [d for d, _ in PAGES])
def test_no_blank_output_areas(visit, docname):
    """A removed stderr or a closed progress bar must not leave an empty box on the page."""
    v = visit(docname)
    if v.page.locator("script[type='application/vnd.jupyter.widget-view+json']").count():
        # The widget manager replaces each widget-view script by the widget: measure after it has.
        v.page.wait_for_selector(".jupyter-widgets", state="attached", timeout=LOAD_TIMEOUT_MS)
        v.page.wait_for_timeout(500)
    blank = v.page.evaluate(_BLANK_OUTPUTS, BLANK_OUTPUT_PX)
    assert not blank, f"{docname}: output areas taller than {BLANK_OUTPUT_PX} px with nothing visible: {blank}"


def test_chapters_are_notebooks():
    """Colab opens .ipynb files only: the book's chapters must be notebooks to get a working launch button."""
    assert NOTEBOOK_PAGES, "no page of _toc.yml is a notebook, so no page has a Colab launch button"


@pytest.mark.parametrize("docname", NOTEBOOK_PAGES)
def test_notebook_page_has_colab_link(visit, docname):
    want = colab_link(docname)
    hrefs = visit(docname).page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
    colab = [h for h in hrefs if "colab" in h]
    assert want in hrefs, f"{docname}: no Colab launch link to {want}; Colab links on the page: {colab}"


def test_widget_manager_is_served_locally(visit):
    """Widget outputs are drawn by the html-manager served from the site; on a page with one, it must load."""
    widget_pages = [d for d, _ in PAGES
                    if "application/vnd.jupyter.widget-view+json" in (SITE / f"{d}.html").read_text()]
    assert widget_pages, "no page of the book shows a widget, so the offline widget manager is never exercised"
    for docname in widget_pages:
        v = visit(docname)
        srcs = v.page.eval_on_selector_all("script[src]", "ss => ss.map(s => s.src)")
        manager = [s for s in srcs if re.search(r"/embed-amd\.js(\?|$)", s)]
        assert manager, f"{docname}: has a widget but no embed-amd.js script"
        for s in manager + [s for s in srcs if re.search(r"/require\.js(\?|$)", s)]:
            assert not _is_remote(s), f"{docname}: widget script {s} is not served by the site"
            assert v.requested.get(s) == 200, f"{docname}: widget script {s} did not load (HTTP {v.requested.get(s)})"
        # The manager replaces each widget-view script by the rendered widget.
        v.page.wait_for_selector(".jupyter-widgets", state="attached", timeout=LOAD_TIMEOUT_MS)


# --- the built files, read without a browser ---------------------------------------------------------------

class _Refs(html.parser.HTMLParser):
    """Everything an HTML page would load: script and stylesheet URLs, media, and URLs inside inline code."""

    LOADS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "video": "src",
             "audio": "src", "embed": "src", "object": "data"}

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self._inline: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link" and a.get("href") and set((a.get("rel") or "").split()) & {
                "stylesheet", "preload", "modulepreload", "prefetch", "preconnect", "dns-prefetch", "icon"}:
            self.refs.append(a["href"])
        elif tag in self.LOADS and a.get(self.LOADS[tag]):
            self.refs.append(a[self.LOADS[tag]])
        if tag in ("script", "style") and not a.get("src"):
            kind = (a.get("type") or "text/javascript").lower()
            self._inline = tag if tag == "style" or "javascript" in kind or kind == "module" else None

    def handle_endtag(self, tag):
        self._inline = None

    def handle_data(self, data):
        if self._inline:
            self.refs += re.findall(r"""https?://[^\s"'`)<>]+""", data)


def _built(pattern: str) -> list[Path]:
    return sorted(p for p in SITE.rglob(pattern) if "_sources" not in p.parts)


def test_built_html_loads_nothing_from_other_hosts(site):
    pages = _built("*.html")
    assert pages, f"no HTML in {site}"
    offsite = {}
    for page in pages:
        parser = _Refs()
        parser.feed(page.read_text(errors="replace"))
        remote = [r for r in parser.refs if _is_remote(r)]
        if remote:
            offsite[str(page.relative_to(site))] = sorted(set(remote))
    assert not offsite, f"built pages that would load from other hosts: {offsite}"


def test_built_css_loads_nothing_from_other_hosts(site):
    offsite = {}
    for css in _built("*.css"):
        text = css.read_text(errors="replace")
        urls = re.findall(r"""url\(\s*['"]?([^'")\s]+)""", text)
        urls += re.findall(r"""@import\s+['"]([^'"]+)['"]""", text)
        remote = [u for u in urls if _is_remote(u)]
        if remote:
            offsite[str(css.relative_to(site))] = sorted(set(remote))
    assert not offsite, f"stylesheets that would load from other hosts: {offsite}"


def test_blank_output_measure_catches_an_empty_box(visit):
    """The measurement above is not vacuous: an empty output area added to a page is reported."""
    v = visit(PAGES[0][0])
    v.page.evaluate("""() => {
      const d = document.createElement("div");
      d.className = "cell_output"; d.id = "planted-blank"; d.style.height = "100px";
      (document.querySelector("article.bd-article") || document.body).appendChild(d);
    }""")
    try:
        blank = v.page.evaluate(_BLANK_OUTPUTS, BLANK_OUTPUT_PX)
    finally:
        v.page.evaluate("() => document.getElementById('planted-blank').remove()")
    assert [b for b in blank if "planted-blank" in b["html"]], blank


def test_offline_extension_drops_blank_outputs():
    """book/_ext/offline.py removes what would be blank on the page: a widget view whose widget was closed
    (a tqdm bar with leave=False) or hidden, and output areas left empty (a removed stderr); it keeps the rest."""
    import json
    import types

    from docutils import nodes

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import offline
    finally:
        sys.path.pop(0)

    def view(model_id):
        body = json.dumps(json.dumps({"version_major": 2, "version_minor": 0, "model_id": model_id}))
        return nodes.raw("", f'<script type="{offline.WIDGET_VIEW}">{body}</script>', format="html")

    def cell(*outputs):
        c = nodes.container(classes=["cell"])
        c += nodes.container("", nodes.literal_block("x = 1", "x = 1"), classes=["cell_input"])
        out = nodes.container(classes=["cell_output"])
        for o in outputs:
            out += o
        c += out
        return c

    state = {"shown": {"state": {"layout": "IPY_MODEL_l1"}}, "l1": {"state": {}},
             "hidden": {"state": {"layout": "IPY_MODEL_l2"}}, "l2": {"state": {"visibility": "hidden"}}}
    doc = nodes.section()
    doc += cell(view("shown"))
    doc += cell(view("closed"))                       # not in the saved state: can never be drawn
    doc += cell(view("hidden"))
    doc += cell()                                      # its only output (stderr) was removed
    doc += cell(nodes.literal_block("printed", "printed"))
    env = types.SimpleNamespace(nb_metadata={"page": {"js_files": {"ipywidgets_state": (
        None, {"body": json.dumps({"version_major": 2, "state": state})})}}})
    offline._drop_blank_outputs(types.SimpleNamespace(env=env), doc, "page")
    outputs = [c for c in doc.findall(nodes.container) if "cell_output" in c["classes"]]
    kept = [o.astext() for o in outputs]
    assert len(outputs) == 2, kept
    assert "shown" in kept[0] and kept[1] == "printed"
    assert len([c for c in doc.findall(nodes.container) if "cell" in c["classes"]]) == 5  # inputs stay
