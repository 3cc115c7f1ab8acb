/* agent-debug report page. Plain JS, no dependencies, nothing fetched.
 *
 * Renders one JSON document (docs/report.md): the run list and, per run, the spans (columns), critical path,
 * hotspots, latency stacking, message flow and diagnosis. Entry points on window.AgentDebugReport:
 *   render(doc)            show a document (the report calls it with the embedded one on load)
 *   applyUpdate(update)    merge a change: {type: "runs"|"run"|"spans"|"state"|"doc", ...} (the live view)
 *   setDetailLoader(fn)    fn(traceId, spanId, index) -> Promise<detail|null>: where span details come from
 *                          when neither the update nor the embedded blocks hold them (a server's API)
 *   selectRun(traceId), selectSpan(spanId), zoomTo(spanId|null)
 * DOM hooks (a contract for tests): .wf-row[data-span-id] (+ data-critical="true", data-status="error",
 * data-stacking), .flow-edge[data-edge="a->b"], .flow-node[data-agent], diagnosis links [data-span-id][data-role],
 * #ad-run-head[data-state] and tr.run[data-state].
 */
// Constants, the page's state and formatting. (The files of static/js/ are concatenated in page.SCRIPTS order
// inside one function scope by agent_debug/report/page.py: they share these names.)

const ROW_H = 22;            // px, matches --row in report.css
const VIRTUAL_MIN = 500;     // rows; up to this many every row is in the DOM, beyond only those near the view
const OVERSCAN = 40;         // rows rendered above and below the viewport
const FOLD_MIN = 3;          // runs of this many similar siblings fold into one row (as `agent-debug tree`)
const BIG_RUN = 20000;       // spans; bigger runs open collapsed below the top level, except along the critical path
const PALETTE = ["#3b82f6", "#14b8a6", "#8b5cf6", "#22c55e", "#0ea5e9", "#ec4899", "#6366f1", "#84cc16",
                 "#06b6d4", "#d946ef", "#64748b", "#10b981", "#a855f7", "#2563eb"];
const KIND_SPAN = 0, KIND_FOLD = 1, KIND_MISSING = 2, KIND_CYCLE = 3;

const S = {
  doc: null, runs: [], raw: new Map(), models: new Map(), current: null, ui: null, detailLoader: null,
  renderQueued: false, queued: [], pick: null, rowEls: new Map(), runEls: new Map(), axisWidth: 0,
};
const $ = (id) => document.getElementById(id);

// -- formatting ----------------------------------------------------------------------------------------------

function fmtNs(ns) {
  if (ns === null || ns === undefined || Number.isNaN(ns)) return "-";
  const a = Math.abs(ns);
  if (a >= 60e9) { const m = Math.floor(ns / 60e9); return m + "m " + ((ns - m * 60e9) / 1e9).toFixed(0) + "s"; }
  if (a >= 1e9) return (ns / 1e9).toFixed(a >= 1e10 ? 1 : 2) + " s";
  if (a >= 1e6) return (ns / 1e6).toFixed(a >= 1e8 ? 0 : a >= 1e7 ? 1 : 2) + " ms";
  if (a >= 1e3) return (ns / 1e3).toFixed(a >= 1e5 ? 0 : 1) + " µs";
  return Math.round(ns) + " ns";
}
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function pretty(v) {
  try { return JSON.stringify(v, null, 2); } catch (e) { return String(v); }
}
function shortId(s) { return String(s || "").slice(0, 12); }
function pct(a, b) { return b > 0 ? Math.round((100 * a) / b) + "%" : "-"; }

/** Make `parent`'s children the elements of `items` ([key, html], in order), reusing the element of a key whose
 * html is unchanged and re-creating only the others: a live page adding one span touches one row, not all.
 * `place(el, n)` then sets what is not in the html (a row's position). Returns the new key -> element cache. */
function reconcile(parent, items, cache, place) {
  const next = new Map(), tpl = document.createElement("template");
  let ref = parent.firstChild;
  items.forEach(([key, html], n) => {
    let e = cache.get(key);
    if (!e || e.html !== html || e.el.parentNode !== parent || next.has(key)) {
      tpl.innerHTML = html;
      e = { el: tpl.content.firstElementChild, html: html };
    }
    next.set(key, e);
    if (place) place(e.el, n);
    if (e.el === ref) ref = ref.nextSibling;
    else parent.insertBefore(e.el, ref);
  });
  while (ref) { const gone = ref; ref = ref.nextSibling; parent.removeChild(gone); }
  return next;
}
