"""Keep the built site offline: switch sphinx-thebe off entirely.

Jupyter Book 1 always loads sphinx-thebe. Its inline configuration script names a CDN URL (and was
declared twice per page, a console error), its ``x-thebe-config`` block names a Binder repository, and live
code would need a Binder server and the network anyway, which an offline site does not have. So once the
builder exists, this extension disconnects every sphinx-thebe event handler (no scripts, no per-page
configuration blocks), drops its static folder (no ``sphinx-thebe.js`` in ``_static/``) and its stylesheet,
and, as a last guard, filters anything thebe from each page's script and stylesheet lists.
Launch buttons (Colab, JupyterHub, Binder) are links, not scripts, and remain.

MathJax (sphinx-mathjax-offline) and the ipywidgets manager (``nb_ipywidgets_js``) are served from the
site itself by ``_config.yml``; ``tests/test_site.py`` checks that no built page refers to another host.
"""
from __future__ import annotations


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


def setup(app):
    # After sphinx-thebe's own builder-inited handler (priority 500), which adds its static folder.
    app.connect("builder-inited", _disconnect_thebe, priority=900)
    app.connect("html-page-context", _drop_thebe_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
