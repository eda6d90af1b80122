/* Part of rlhf-course, not of the vendored packages. _config.yml (nb_ipywidgets_js) loads it after
 * require.js and before embed-amd.js, on pages that show a widget. Two fixes for a static, offline page:
 *
 * 1. Asset URLs. embed-amd.js defines its AMD modules by name and loads its fonts and icons from the
 *    folder of each module's URL, which requirejs derives from the module's name relative to the page:
 *    on book/x.html it would ask for book/@jupyter-widgets/html-manager/dist/<hash>.woff2, which does not
 *    exist. Mapping the module names into this script's own folder makes those URLs point at the files
 *    beside it, on a page at any depth, wherever the site is served.
 * 2. MathJax. The widgets typeset their labels with MathJax 2's MathJax.Hub.Queue whenever window.MathJax
 *    exists; the site serves MathJax 3, which has no Hub, so a widget with a description would throw.
 *    Once the page has loaded (MathJax's deferred script has run; the manager draws widgets on the same
 *    event, after this listener), a minimal Hub hands those requests to MathJax 3.
 */
(function () {
  var script = document.currentScript;
  if (script && window.requirejs) {
    var base = script.src.slice(0, script.src.lastIndexOf("/") + 1);
    var modules = ["base", "base7", "controls", "controls7", "html-manager", "html-manager/dist/libembed-amd"];
    var paths = {};
    modules.forEach(function (name) {
      paths["@jupyter-widgets/" + name] = base + name.replace(/\//g, "-");
    });
    window.requirejs.config({ paths: paths });
  }

  window.addEventListener("load", function () {
    var mj = window.MathJax;
    if (!mj || !mj.startup || mj.Hub) return;
    mj.Hub = {
      Queue: function (job) {
        var element = job && job[2];
        mj.startup.promise.then(function () {
          return mj.typesetPromise(element ? [element] : undefined);
        }).catch(function (err) { console.warn("MathJax could not typeset a widget label:", err); });
      }
    };
  });
})();
