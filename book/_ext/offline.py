"""Keep the built site offline: drop sphinx-thebe's scripts from every page.

Jupyter Book 1 always loads sphinx-thebe. Its inline configuration script points at a CDN and was
declared twice per page (a console error), and live code would need a Binder server and the network
anyway, which an offline site does not have. Launch buttons (Colab, JupyterHub) remain.
"""


def _drop_thebe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    keep = []
    for js in scripts:
        src = str(js)
        body = getattr(js, "attributes", {}).get("body", "") or ""
        if "thebe" in src.lower() or "THEBE_JS_URL" in body:
            continue
        keep.append(js)
    context["script_files"] = keep


def setup(app):
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
