// Run selection, the public entry points (window.AgentDebugReport) and the boot from the embedded document.

// -- run selection and the public entry points ---------------------------------------------------------------

function model(tid) {
  if (!S.models.has(tid)) {
    const raw = S.raw.get(tid);
    if (!raw) return null;
    S.models.set(tid, prepare(raw));
  }
  return S.models.get(tid);
}

function defaultSelection(R) {
  const d = R.run.why && R.run.why.diagnosis;
  const sid = d ? d.root_cause.span_id : R.run.critical && R.run.critical.bottleneck ? R.run.critical.bottleneck.span_id : null;
  return sid !== null && R.idx.has(sid) ? R.idx.get(sid) : -1;
}

function selectRun(tid, keepUi) {
  const R = model(tid);
  if (!R) return false;
  const prev = S.current, same = prev && prev.tid === tid;
  S.current = R;
  if (keepUi && same && S.ui) { if (prev !== R) remapUi(prev, R, S.ui); }
  else S.ui = newUi(R);
  renderHead(R); renderRuns(); renderNotices(R); renderDiagnosis(R); renderHotspots(R); renderFlow(R);
  rebuild(keepUi && same);
  if (S.ui.sel >= 0 && S.ui.sel < R.n) showDetails(S.ui.sel);
  else {
    const i = defaultSelection(R);
    if (i >= 0) selectIndex(i, { flash: false });
    else $("ad-details").innerHTML = '<div class="panel-head"><h2>Span</h2></div><div class="muted">click a span to see its details</div>';
  }
  return true;
}

/** The run's data was replaced (its analysis arrived): keep what was selected, collapsed and unfolded, by id. */
function remapUi(prev, R, ui) {
  const map = (set) => new Set([...set].map((i) => R.idx.get(prev.ids[i])).filter((i) => i !== undefined));
  ui.collapsed = map(ui.collapsed);
  ui.unfolded = map(ui.unfolded);
  const sel = ui.sel >= 0 ? R.idx.get(prev.ids[ui.sel]) : undefined;
  ui.sel = sel === undefined ? -1 : sel;
  ui.findPos = -1;
}

function selectSpan(sid) {
  const R = S.current;
  if (!R || !R.idx.has(sid)) return false;
  return selectIndex(R.idx.get(sid), { flash: true });
}

function render(doc) {
  S.doc = doc || { runs: [], data: {}, notices: [] };
  S.runs = (S.doc.runs || []).slice();
  S.raw = new Map(Object.entries(S.doc.data || {}));
  S.models = new Map();
  S.current = null;
  document.title = S.doc.title || "agent-debug";
  document.body.dataset.state = S.doc.state || "";
  const first = S.doc.selected || (S.runs[0] && S.runs[0].trace_id);
  if (first && S.raw.has(first)) selectRun(first);
  else { renderRuns(); renderNotices(null); }
}

function upsertRun(entry) {
  const k = S.runs.findIndex((r) => r.trace_id === entry.trace_id);
  if (k >= 0) S.runs[k] = Object.assign({}, S.runs[k], entry); else S.runs.unshift(entry);
}

/** Spans as the API and SSE carry them (absolute ns, ids), appended to run `tid`. */
function appendSpans(tid, spans) {
  if (!S.raw.has(tid)) S.raw.set(tid, emptyRun(tid));
  const R = model(tid);
  R.live = true;
  for (const sp of spans) {
    if (R.idx.has(sp.span_id)) continue;
    if (R.base === null || R.base === undefined) R.base = sp.start_ns;
    const i = R.n++;
    R.ids.push(sp.span_id); R.idx.set(sp.span_id, i);
    R.pid.push(sp.parent_id || null); R.parent.push(-1);
    R.agent.push(String(sp.agent_name)); R.type.push(String(sp.event_type)); R.name.push(String(sp.name || sp.event_type));
    R.status.push(sp.status || "ok");
    R.start.push(sp.start_ns - R.base); R.dur.push(sp.duration_ns || 0); R.end.push(sp.start_ns - R.base + (sp.duration_ns || 0));
    if (sp.prompt_tokens || sp.completion_tokens || sp.cost_usd) R.tokens.set(i, [sp.prompt_tokens || 0, sp.completion_tokens || 0, sp.cost_usd || 0]);
    if (sp.detail) R.inline.set(i, sp.detail);
  }
  for (let i = 0; i < R.n; i++) {
    if (R.parent[i] < 0 && R.pid[i] !== null && !R.cycleCut.has(i)) {
      const p = R.idx.get(R.pid[i]);
      if (p !== undefined && p !== i) R.parent[i] = p;
    }
  }
  link(R);
  const entry = S.runs.find((r) => r.trace_id === tid);
  upsertRun(Object.assign({ trace_id: tid, status: R.run.status, state: R.run.state, workflow: null, duration_ns: 0 }, entry || {},
    { span_count: R.n, duration_ns: runBounds(R)[1] - runBounds(R)[0] }));
}

function queueRender(fn) {
  S.queued = S.queued || [];
  S.queued.push(fn);
  if (S.renderQueued) return;
  S.renderQueued = true;
  setTimeout(() => {
    S.renderQueued = false;
    const todo = S.queued; S.queued = [];
    const touched = new Map();  // trace id -> the kinds of update it had
    for (const f of todo) {
      const got = f();
      if (got) (touched.get(got[0]) || touched.set(got[0], new Set()).get(got[0])).add(got[1]);
    }
    const pick = S.pick;
    S.pick = null;
    if (pick && S.raw.has(pick) && !(S.current && S.current.tid === pick)) selectRun(pick);
    else if (!S.current) {  // the first run that has data (a run listed before any of its spans came has none)
      const first = S.runs.find((r) => S.raw.has(r.trace_id));
      if (first) selectRun(first.trace_id); else renderRuns();
    }
    else if (touched.has(S.current.tid)) {
      const kinds = touched.get(S.current.tid);
      if (kinds.has("run")) selectRun(S.current.tid, true);
      else refreshLive(S.current, kinds.has("state"));
    }
    else renderRuns();
  }, 0);
}

/** The shown run got spans or a new state, its analysis unchanged: redraw only what that changes (the header,
 * the run list, the rows; the diagnosis' "not analysed yet" line for a state). Keeps a live page cheap. */
function refreshLive(R, stateChanged) {
  renderHead(R);
  renderRuns();
  if (stateChanged) renderDiagnosis(R);
  rebuild(true);
}

/** Merge one change. Types: {type:"doc", doc} | {type:"runs", runs:[entry]} | {type:"run", trace_id, run}
 * | {type:"spans", trace_id, spans:[span]} | {type:"state", trace_id, state, status?}
 * | {type:"select", trace_id} (show that run once the updates before it are in: a live view following new runs). */
function applyUpdate(u) {
  if (!u || !u.type) throw new Error("an update needs a type");
  if (u.type === "doc") { render(u.doc); return; }
  if (!S.doc) render({ mode: "live", runs: [], data: {}, notices: [] });
  queueRender(() => {  // returns [trace id, kind] of what changed, or null (see queueRender)
    if (u.type === "runs") { for (const r of u.runs || []) upsertRun(r); return null; }
    if (u.type === "run") {
      const keep = S.models.get(u.trace_id);
      S.raw.set(u.trace_id, u.run);
      S.models.delete(u.trace_id);
      if (keep && keep.n > (u.run.spans && u.run.spans.id ? u.run.spans.id.length : 0)) {
        // spans that arrived after the analysis was computed stay
        const R = model(u.trace_id), extra = [];
        for (let i = 0; i < keep.n; i++) if (!R.idx.has(keep.ids[i])) extra.push(spanOf(keep, i));
        if (extra.length) appendSpans(u.trace_id, extra);
      }
      upsertRun(Object.assign({ trace_id: u.trace_id }, { state: u.run.state, status: u.run.status }));
      return [u.trace_id, "run"];
    }
    if (u.type === "spans") { appendSpans(u.trace_id, u.spans || []); return [u.trace_id, "spans"]; }
    if (u.type === "select") { S.pick = u.trace_id; return null; }
    if (u.type === "state") {
      const raw = S.raw.get(u.trace_id) || (S.raw.set(u.trace_id, emptyRun(u.trace_id)), S.raw.get(u.trace_id));
      raw.state = u.state;
      if (u.status) raw.status = u.status;
      upsertRun({ trace_id: u.trace_id, state: u.state, ...(u.status ? { status: u.status } : {}) });
      return [u.trace_id, "state"];
    }
    throw new Error("unknown update type " + u.type);
  });
}

function spanOf(R, i) {
  return { span_id: R.ids[i], parent_id: R.pid[i], agent_name: R.agent[i], event_type: R.type[i], name: R.name[i],
           status: R.status[i], start_ns: R.base + R.start[i], duration_ns: R.dur[i], detail: R.inline.get(i) };
}

function wire() {
  $("ad-wf-canvas").addEventListener("click", onCanvasClick);
  $("ad-wf-canvas").addEventListener("dblclick", onCanvasDblClick);
  let ticking = false;
  $("ad-wf-scroll").addEventListener("scroll", () => {
    if (ticking || !S.ui || S.ui.rows.length <= VIRTUAL_MIN) return;
    ticking = true;
    requestAnimationFrame(() => { ticking = false; renderRows(false); });
  });
  $("ad-details").addEventListener("click", onDetailsClick);
  for (const id of ["ad-diagnosis", "ad-hotspots", "ad-stacking", "ad-flow"]) $(id).addEventListener("click", onLinkClick);
  $("ad-runs").addEventListener("click", (ev) => { const tr = ev.target.closest("tr.run"); if (tr) selectRun(tr.dataset.traceId); });
  $("ad-expand").addEventListener("click", () => { if (S.ui) { S.ui.collapsed.clear(); rebuild(true); } });
  $("ad-collapse").addEventListener("click", () => { if (S.ui) { S.ui.collapsed.clear(); collapseBelow(S.current, S.ui, 1, false); rebuild(false); } });
  $("ad-zoom-reset").addEventListener("click", () => zoomTo(null));
  $("ad-find").addEventListener("input", () => $("ad-find").setCustomValidity(""));
  $("ad-find").addEventListener("keydown", (ev) => { if (ev.key === "Enter") find($("ad-find").value); });
  window.addEventListener("resize", () => { S.axisWidth = 0; if (S.ui) { renderAxis(S.current, S.ui); renderRows(true); } });
}

window.AgentDebugReport = {
  render: render, applyUpdate: applyUpdate, selectRun: (tid) => selectRun(tid),
  selectSpan: selectSpan, zoomTo: (sid) => zoomTo(sid === null ? null : S.current.idx.get(sid)),
  setDetailLoader: (fn) => { S.detailLoader = fn; },
  state: () => ({ trace_id: S.current && S.current.tid, spans: S.current ? S.current.n : 0, rows: S.ui ? S.ui.rows.length : 0,
                  selected: S.current && S.ui && S.ui.sel >= 0 ? S.current.ids[S.ui.sel] : null, timing: S.timing || null }),
};

wire();
const embedded = document.getElementById("agent-debug-doc");
if (embedded) {
  try {
    const t0 = performance.now(), doc = JSON.parse(embedded.textContent), t1 = performance.now();
    render(doc);
    S.timing = { parse_ms: t1 - t0, render_ms: performance.now() - t1 };
  }
  catch (e) { document.body.insertAdjacentHTML("afterbegin", '<div class="ad-notices">could not read the embedded report: ' + esc(e.message) + "</div>"); throw e; }
}
