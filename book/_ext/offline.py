"""Keep the built site offline: switch sphinx-thebe off entirely.

Jupyter Book 1 always loads sphinx-thebe. Its inline configuration script names a CDN URL (and was
declared twice per page, a console error), its ``x-thebe-config`` block names a Binder repository, and live
code would need a Binder server and the network anyway, which an offline site does not have. So once the
builder exists, this extension disconnects every sphinx-thebe event handler (no scripts, no per-page
configuration blocks), drops its static folder (no ``sphinx-thebe.js`` in ``_static/``) and its stylesheet,
and, as a last guard, filters anything thebe from each page's script and stylesheet lists.
Launch buttons (Colab, JupyterHub, Binder) are links, not scripts, and remain.

It also drops outputs a reader would see as blank space (``_drop_blank_outputs``): a widget view whose widget
was closed before the notebook finished (a tqdm bar with ``leave=False`` closes its widget, so the saved widget
state no longer has it and the page can never draw it) or is hidden by its layout, and then every output area
left with nothing in it (a cell whose only output was stderr, removed by ``stderr_output: remove``, keeps an
empty output container otherwise). ``tests/test_site.py`` measures that no output area is blank.

MathJax (sphinx-mathjax-offline) and the ipywidgets manager (``nb_ipywidgets_js``) are served from the
site itself by ``_config.yml``; ``tests/test_site.py`` checks that no built page refers to another host.
"""
from __future__ import annotations

import json
import re

from docutils import nodes

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_MODEL_ID = re.compile(r'model_id\\?"\s*:\s*\\?"([^"\\]+)')


def _is_thebe(name) -> bool:
    return "thebe" in str(name).lower()


def _disconnect_thebe(app) -> None:
    for listeners in list(app.events.listeners.values()):
        for listener in list(listeners):
            if getattr(listener.handler, "__module__", "").split(".")[0] == "sphinx_thebe":
                app.disconnect(listener.id)
    app.config.html_static_path = [p for p in app.config.html_static_path if "sphinx_thebe" not in str(p)]
    css = getattr(app.builder, "css_files", None)
    if isinstance(css, list):
        css[:] = [c for c in css if not _is_thebe(getattr(c, "filename", c))]


def _drop_thebe_assets(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if scripts:
        context["script_files"] = [
            js for js in scripts
            if not _is_thebe(getattr(js, "filename", js))
            and "THEBE_JS_URL" not in ((getattr(js, "attributes", {}) or {}).get("body", "") or "")
        ]
    css = context.get("css_files")
    if css:
        context["css_files"] = [c for c in css if not _is_thebe(getattr(c, "filename", c))]


def _widget_state(env, docname: str) -> dict:
    """The page's saved widget models (model id -> state), as myst-nb put them on the page; {} if none."""
    try:
        from myst_nb.sphinx_ import NbMetadataCollector
    except ImportError:
        return {}
    js = NbMetadataCollector.get_doc_data(env).get(docname, {}).get("js_files", {})
    _, kwargs = js.get("ipywidgets_state", (None, {}))
    body = (kwargs or {}).get("body")
    if not body:
        return {}
    try:
        return json.loads(body.replace("<\\/", "</")).get("state", {})
    except ValueError:
        return {}


def _drawable(script: str, state: dict) -> bool:
    """Whether a widget-view output can be drawn and is visible: its model, and its layout, are not
    closed or hidden."""
    m = _MODEL_ID.search(script)
    if not m or m.group(1) not in state:
        return False
    layout_ref = str(state[m.group(1)].get("state", {}).get("layout", ""))
    layout = state.get(layout_ref.removeprefix("IPY_MODEL_"), {}).get("state", {})
    return layout.get("visibility") != "hidden" and layout.get("display") != "none"


def _is_empty(node) -> bool:
    return not any(not isinstance(c, nodes.Text) or c.astext().strip() for c in node.children)


def _drop_blank_outputs(app, doctree, docname) -> None:
    state = None
    for raw in list(doctree.findall(nodes.raw)):
        text = raw.astext()
        if f'type="{WIDGET_VIEW}"' in text:
            if state is None:
                state = _widget_state(app.env, docname)
            if not _drawable(text, state):
                raw.parent.remove(raw)
    # Containers emptied above, or by a removed stderr; then cells left with neither source nor output.
    for classes in (("output",), ("cell_output",), ("cell",)):
        for node in list(doctree.findall(nodes.container)):
            if any(c in node.get("classes", []) for c in classes) and _is_empty(node) and node.parent:
                node.parent.remove(node)


def setup(app):
    # After sphinx-thebe's own builder-inited handler (priority 500), which adds its static folder.
    app.connect("builder-inited", _disconnect_thebe, priority=900)
    app.connect("html-page-context", _drop_thebe_assets, priority=900)
    app.connect("doctree-resolved", _drop_blank_outputs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
