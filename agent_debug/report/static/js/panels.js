// The side and lower panels: span details (inflated from the embedded blocks), why, hotspots and stacking;
// the header, the run list, the notices.

// -- details panel -------------------------------------------------------------------------------------------

function loadDetail(R, i) {
  if (R.inline.has(i)) return Promise.resolve(R.inline.get(i));
  const det = R.run.details || {}, size = det.block_size || 1, blocks = det.blocks || [];
  const k = Math.floor(i / size);
  if (i < R.docN && k < blocks.length) {
    if (!R.blockCache.has(k)) R.blockCache.set(k, inflate(blocks[k]));
    return R.blockCache.get(k).then((arr) => arr[i - k * size] || null);
  }
  if (S.detailLoader) return Promise.resolve(S.detailLoader(R.tid, R.ids[i], i));
  return Promise.resolve(null);
}

/** base64 -> gunzip (the browser's own DecompressionStream) -> JSON. */
async function inflate(b64) {
  if (typeof DecompressionStream === "undefined") throw new Error("this browser cannot inflate the embedded records (no DecompressionStream)");
  const bin = atob(b64), bytes = new Uint8Array(bin.length);
  for (let j = 0; j < bin.length; j++) bytes[j] = bin.charCodeAt(j);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

function kvRows(pairs) {
  return pairs.filter((p) => p[1] !== null && p[1] !== undefined && p[1] !== "")
    .map((p) => "<tr><th>" + esc(p[0]) + "</th><td>" + p[1] + "</td></tr>").join("");
}

function showDetails(i) {
  const R = S.current, ui = S.ui, box = $("ad-details");
  const token = ++ui.detailToken;
  box.dataset.spanId = R.ids[i];
  box.dataset.loaded = "false";
  const runDur = (R.run.critical && R.run.critical.duration_ns) || (runBounds(R)[1] - runBounds(R)[0]);
  const tok = R.tokens.get(i), crit = R.crit.get(i) || 0, st = R.stack.get(i);
  const p = R.parent[i];
  const wall = R.base !== null && R.base !== undefined ? new Date((R.base + R.start[i]) / 1e6).toISOString() : null;
  let html = '<div class="panel-head"><h2>Span</h2><span class="mono muted">' + esc(R.ids[i]) + "</span></div>" +
    '<div class="det-title"><i class="chip" style="display:inline-block;background:' + color(R, R.agent[i]) + '"></i> ' +
    esc(R.agent[i]) + ' <span class="wf-type">' + esc(R.type[i]) + "</span> " + esc(R.name[i]) + "</div>";
  html += '<table class="kv">' + kvRows([
    ["status", '<span class="badge st-' + esc(R.status[i]) + '" data-status="' + esc(R.status[i]) + '">' + esc(R.status[i]) + "</span>"],
    ["parent", p >= 0 ? '<a data-goto="' + esc(R.ids[p]) + '">' + esc(R.agent[p] + " " + R.name[p]) + "</a>" : esc(R.pid[i] || "none (root)")],
    ["start", "+" + esc(fmtNs(R.start[i] - runBounds(R)[0])) + (wall ? ' <span class="muted">' + esc(wall) + "</span>" : "")],
    ["duration", esc(fmtNs(R.dur[i])) + (R.end[i] !== R.start[i] + R.dur[i] ? ' <span class="muted">(until the work it caused is done: ' + esc(fmtNs(R.end[i] - R.start[i])) + ")</span>" : "")],
    ["self time", '<span id="ad-det-self">…</span>'],
    ["critical time", esc(fmtNs(crit)) + (crit ? ' <span class="muted">(' + pct(crit, runDur) + " of the run)</span>" : "")],
    ["tokens", tok ? esc(tok[0] + " prompt + " + tok[1] + " completion") : null],
    ["cost", tok && tok[2] ? "$" + esc(Number(tok[2]).toFixed(6)) : null],
    ["stacking", st ? esc((st.role === "first" ? "runs before " : "runs after ") + (st.role === "first" ? st.s.second : st.s.first).agent_name +
      " " + (st.role === "first" ? st.s.second : st.s.first).name + ", no link between them: running both side by side would save " + fmtNs(st.s.saving_ns)) : null],
  ]) + "</table>";
  html += '<div class="det-actions"><button type="button" data-act="zoom">zoom to span</button>' +
    '<button type="button" data-act="unzoom"' + (ui.domain ? "" : " disabled") + ">reset zoom</button></div>";
  html += '<div id="ad-det-more" class="muted">loading details…</div>';
  box.innerHTML = html;
  loadDetail(R, i).then((d) => {
    if (token !== ui.detailToken) return;
    fillDetail(d);
    box.dataset.loaded = "true";
  }, (err) => {
    if (token !== ui.detailToken) return;
    $("ad-det-more").textContent = "details unavailable: " + (err && err.message ? err.message : err);
    box.dataset.loaded = "error";
  });
}

function fillDetail(d) {
  const more = $("ad-det-more");
  more.className = "";
  if (!d) { more.innerHTML = '<span class="muted">no record kept for this span</span>'; return; }
  if (d.self_ns !== undefined) $("ad-det-self").textContent = fmtNs(d.self_ns);
  let html = "";
  if (d.error) {
    html += '<h3>Error</h3><div class="err-box">' + esc(d.error.type || "error") + (d.error.message ? ": " + esc(d.error.message) : "") + "</div>";
  }
  const attrs = d.attributes || {};
  const keys = Object.keys(attrs).sort();
  html += "<h3>Attributes (" + keys.length + ")</h3>";
  html += keys.length ? '<table class="kv attrs">' + keys.map((k) => {
    const v = attrs[k];
    return '<tr data-attr="' + esc(k) + '"><th class="mono">' + esc(k) + "</th><td>" +
      (typeof v === "string" ? esc(v) : '<code>' + esc(JSON.stringify(v)) + "</code>") + "</td></tr>";
  }).join("") + "</table>" : '<div class="muted">none</div>';
  if (d.payload !== undefined) html += '<h3>Payload</h3><pre class="json" data-payload>' + esc(pretty(d.payload)) + "</pre>";
  if (d.token_cost) html += '<h3>Token cost</h3><pre class="json">' + esc(pretty(d.token_cost)) + "</pre>";
  if (d.other) html += '<h3>Other fields</h3><pre class="json">' + esc(pretty(d.other)) + "</pre>";
  more.innerHTML = html;
}

function onDetailsClick(ev) {
  const a = ev.target.closest("[data-goto],[data-act]");
  if (!a) return;
  if (a.dataset.goto) { selectSpan(a.dataset.goto); return; }
  if (a.dataset.act === "zoom") zoomTo(S.ui.sel);
  if (a.dataset.act === "unzoom") zoomTo(null);
  showDetails(S.ui.sel);
}

// -- diagnosis (`why`) ---------------------------------------------------------------------------------------

function spanLabel(R, sid) {
  const i = R.idx.get(sid);
  return i === undefined ? sid : R.agent[i] + " " + R.type[i] + " " + R.name[i];
}

function renderDiagnosis(R) {
  const box = $("ad-diagnosis"), why = R.run.why || {}, d = why.diagnosis;
  box.dataset.bucket = d ? d.bucket : "";
  const link = (sid, role, label) => '<a class="diag-link" data-span-id="' + esc(sid) + '" data-role="' + role + '">' + esc(label) + "</a>";
  if (!d) {
    const st = R.run.status || "unknown";
    const head = '<div class="panel-head"><h2>Why</h2><span class="badge st-' + esc(st) + '">' + esc(st) + "</span></div>";
    if (R.run.state && R.run.state !== "DONE" && !(R.run.state === "IDLE" && why.status)) {
      box.innerHTML = head + '<div class="muted">not analysed yet (' + esc(R.run.state) + ")</div>";
      return;
    }
    box.innerHTML = head + suspectsHtml(R, why, link);
    return;
  }
  let html = '<div class="panel-head"><h2>Why it failed</h2><span class="badge bucket">' + esc(d.bucket) + "</span></div>";
  html += "<h3>Root cause → hops → visible failure</h3><ol class=\"chain\">";
  d.chain.forEach((sid, n) => {
    const last = n === d.chain.length - 1;
    const role = n === 0 ? "root_cause" : last ? "visible_failure" : "hop";
    const label = n === 0 ? (last ? "root cause · visible failure" : "root cause") : last ? "visible failure" : "hop";
    html += '<li class="' + role + '">' + link(sid, role, spanLabel(R, sid)) + '<span class="role">' + label + "</span></li>";
  });
  html += "</ol><h3>Evidence</h3><ul class=\"plain\">";
  for (const e of d.evidence || []) {
    const m = /\(([0-9A-Za-z_.:-]{4,})\)/.exec(e);
    const sid = m && R.idx.has(m[1]) ? m[1] : d.root_cause.span_id;
    html += "<li>" + link(sid, "evidence", e) + "</li>";
  }
  html += "</ul>";
  const others = (d.suspects || []).slice(1);
  if (others.length) {
    html += '<h3>Other suspects</h3><ul class="plain">';
    for (const s of others.slice(0, 12)) {
      html += "<li>" + link(s.span_id, "suspect", s.agent_name + " " + s.name) + ': <span class="muted">' +
        esc(s.reason) + " (" + esc(s.bucket) + ", " + esc(s.strength) + ")</span></li>";
    }
    if (others.length > 12) html += '<li class="muted">+' + (others.length - 12) + " more</li>";
    html += "</ul>";
  }
  html += '<div class="next"><b>Next:</b> ' + esc(d.next_action) + "</div>";
  box.innerHTML = html;
}

// A run with no diagnosis (not marked failed): its ranked span suspects, as `why` lists them, never "nothing to
// explain" (a silent failure carries no error status).
function suspectsHtml(R, why, link) {
  const st = R.run.status || "unknown";
  let html = '<div class="muted" data-note>' + esc(why.note || "the run was not marked failed (status " + st + ")") + "</div>";
  const sus = why.suspects || [];
  if (!sus.length) {
    html += '<div class="muted" data-no-suspects>no suspects: no span signal fired above the threshold</div>';
  } else {
    html += '<h3>Suspects (' + esc(why.method || "span signals") + ")</h3><ol class=\"suspects\">";
    for (const s of sus.slice(0, 12)) {
      html += "<li>" + link(s.span_id, "suspect", s.agent_name + " " + s.name) + ' <span class="muted">' +
        esc(s.signal + " (" + s.bucket + ") " + Number(s.score).toFixed(2)) + "</span>" +
        ((s.evidence || []).length ? '<div class="muted ev">' + esc(s.evidence[0]) + "</div>" : "") + "</li>";
    }
    html += "</ol>";
    if (sus.length > 12) html += '<div class="muted">+' + (sus.length - 12) + " more (agent-debug why --json lists them all)</div>";
  }
  const weak = why.weaker_suspects || [];
  if (weak.length) {
    html += '<h3>Weaker</h3><ul class="plain">' + weak.slice(0, 5).map((s) => "<li>" + link(s.span_id, "weaker", s.agent_name + " " + s.name) +
      ' <span class="muted">' + esc(s.signal + " " + Number(s.score).toFixed(2)) + "</span></li>").join("") + "</ul>";
  }
  return html;
}

function onLinkClick(ev) {
  const a = ev.target.closest("a[data-span-id], [data-first-span]");
  if (!a) return;
  ev.preventDefault();
  selectSpan(a.dataset.spanId || a.dataset.firstSpan);
}

// -- hotspots and stacking -----------------------------------------------------------------------------------

function renderHotspots(R) {
  const crit = R.run.critical || {}, dur = crit.duration_ns || 0, b = crit.bottleneck;
  const hs = crit.hotspots || [];
  let html = hs.length ? '<table class="grid"><tr><th>agent</th><th class="num">critical</th><th class="num">share</th>' +
    '<th class="num">self time</th><th class="num">spans</th></tr>' : '<div class="muted">none</div>';
  for (const h of hs) {
    const bn = b && b.agent_name === h.agent_name;
    html += '<tr class="' + (bn ? "hot-bottleneck" : "") + '" data-hotspot="' + esc(h.agent_name) + '"><td><i class="chip" style="display:inline-block;background:' +
      color(R, h.agent_name) + '"></i> ' + esc(h.agent_name) + (bn ? " (bottleneck)" : "") + '</td><td class="num">' + esc(fmtNs(h.critical_ns)) +
      '</td><td class="num">' + pct(h.critical_ns, dur) + '</td><td class="num">' + esc(fmtNs(h.total_ns)) + '</td><td class="num">' + h.spans + "</td></tr>";
  }
  if (hs.length) html += "</table>";
  if (b) html += '<div class="muted" style="margin-top:4px">bottleneck span: <a data-span-id="' + esc(b.span_id) + '" data-role="bottleneck">' +
    esc(b.agent_name + " " + b.name) + "</a> " + esc(fmtNs(b.critical_ns)) + " on the critical path</div>";
  $("ad-hotspots").innerHTML = html;
  const st = crit.stacking || [];
  let sh = st.length ? '<table class="grid"><tr><th>first</th><th>then</th><th class="num">would save</th><th class="num">gap</th></tr>' :
    '<div class="muted">none found: no sequential siblings without a link between them</div>';
  for (const s of st.slice(0, 20)) {
    sh += '<tr title="' + esc(s.evidence) + '"><td><a data-span-id="' + esc(s.first.span_id) + '" data-role="stacking">' + esc(s.first.agent_name + " " + s.first.name) +
      '</a></td><td><a data-span-id="' + esc(s.second.span_id) + '" data-role="stacking">' + esc(s.second.agent_name + " " + s.second.name) +
      '</a></td><td class="num">' + esc(fmtNs(s.saving_ns)) + '</td><td class="num">' + esc(fmtNs(s.gap_ns)) + "</td></tr>";
  }
  if (st.length) sh += "</table>" + (st.length > 20 ? '<div class="muted">+' + (st.length - 20) + " more</div>" : "");
  $("ad-stacking").innerHTML = sh;
}

// -- header, run list, notices -------------------------------------------------------------------------------

function renderHead(R) {
  const run = R.run, s = run.summary || {}, head = $("ad-run-head");
  const b = run.critical && run.critical.bottleneck;
  head.dataset.state = run.state || "";
  head.dataset.status = run.status || "";
  head.dataset.traceId = R.tid;
  document.body.dataset.state = run.state || "";
  const dur = s.duration_ns !== undefined ? s.duration_ns : runBounds(R)[1] - runBounds(R)[0];
  const tokens = (s.prompt_tokens || 0) + (s.completion_tokens || 0);
  head.innerHTML = '<span class="title">' + esc(s.workflow || "run") + '</span><span class="mono kv">' + esc(R.tid) + "</span>" +
    '<span class="badge st-' + esc(run.status) + '" data-status="' + esc(run.status) + '">' + esc(run.status) + "</span>" +
    '<span class="badge state" id="ad-run-state" data-state="' + esc(run.state) + '" title="analysis state">' + esc(run.state) + "</span>" +
    '<span class="kv">duration <b>' + esc(fmtNs(dur)) + "</b></span>" +
    '<span class="kv">spans <b>' + R.n + "</b></span>" +
    '<span class="kv">agents <b>' + ((s.agents || []).length || new Set(R.agent).size) + "</b></span>" +
    (s.error_spans ? '<span class="kv">errors <b>' + s.error_spans + "</b></span>" : "") +
    (tokens ? '<span class="kv">tokens <b>' + tokens + "</b></span>" : "") +
    (s.cost_usd ? '<span class="kv">cost <b>$' + Number(s.cost_usd).toFixed(4) + "</b></span>" : "") +
    (b ? '<span class="kv">bottleneck <b>' + esc(b.agent_name + " " + b.name) + "</b></span>" : "");
}

function renderRuns() {
  const box = $("ad-runs"), app = $("ad-app");
  const show = S.runs.length > 1 || (S.doc && S.doc.mode === "live");
  box.hidden = !show;
  app.classList.toggle("with-runs", show);
  if (!show) return;
  let body = box.querySelector("tbody");
  if (!body) {
    box.innerHTML = '<div class="panel-head"><h2>Runs</h2></div><table><tbody></tbody></table>';
    body = box.querySelector("tbody");
    S.runEls = new Map();
  }
  box.querySelector("h2").textContent = "Runs (" + S.runs.length + ")";
  // row by row: a live page updates one run's row while hundreds are listed
  S.runEls = reconcile(body, S.runs.map((r) => [r.trace_id, '<tr class="run" data-trace-id="' + esc(r.trace_id) +
    '" data-state="' + esc(r.state || "") + '" data-status="' + esc(r.status || "") +
    '" aria-selected="' + (S.current && S.current.tid === r.trace_id) + '"><td><div>' + esc(r.workflow || "run") +
    ' <span class="badge st-' + esc(r.status) + '">' + esc(r.status) + '</span></div><div class="rid">' + esc(shortId(r.trace_id)) +
    " · " + esc(fmtNs(r.duration_ns)) + " · " + (r.span_count || 0) + " spans" + (r.state && r.state !== "DONE" ? " · " + esc(r.state) : "") +
    "</div>" + (r.bucket ? '<div><span class="badge bucket">' + esc(r.bucket) + "</span></div>" : "") + "</td></tr>"]),
    S.runEls || new Map());
}

function renderNotices(R) {
  const notes = ((S.doc && S.doc.notices) || []).concat((R && R.run.notes) || []);
  const box = $("ad-notices");
  box.hidden = !notes.length;
  box.innerHTML = notes.map((n) => "<div>" + esc(n) + "</div>").join("");
}
