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
(function () {
  "use strict";

  const ROW_H = 22;            // px, matches --row in report.css
  const VIRTUAL_MIN = 500;     // rows; up to this many every row is in the DOM, beyond only those near the view
  const OVERSCAN = 40;         // rows rendered above and below the viewport
  const FOLD_MIN = 3;          // runs of this many similar siblings fold into one row (as `agent-debug tree`)
  const BIG_RUN = 20000;       // spans; bigger runs start collapsed below the second level
  const PALETTE = ["#3b82f6", "#14b8a6", "#8b5cf6", "#22c55e", "#0ea5e9", "#ec4899", "#6366f1", "#84cc16",
                   "#06b6d4", "#d946ef", "#64748b", "#10b981", "#a855f7", "#2563eb"];
  const KIND_SPAN = 0, KIND_FOLD = 1, KIND_MISSING = 2, KIND_CYCLE = 3;

  const S = {
    doc: null, runs: [], raw: new Map(), models: new Map(), current: null, ui: null, detailLoader: null,
    renderQueued: false,
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

  // -- the model of one run ------------------------------------------------------------------------------------

  function emptyRun(traceId) {
    return {
      trace_id: traceId, state: "RECORDING", status: "unknown", summary: {}, start_ns: null, end_ns: null,
      dict: { agent: [], type: [], name: [], status: [] },
      spans: { id: [], parent: [], agent: [], type: [], name: [], status: [], start: [], dur: [], ext_end: [], tokens: [] },
      tops: { roots: [], missing: [], cycles: [] },
      critical: { path: [], bottleneck: null, hotspots: [], stacking: [], duration_ns: 0 },
      flow: { nodes: [], edges: [], bottleneck_agent: null },
      why: { diagnosis: null }, notes: [], details: { blocks: [], block_size: 1 },
    };
  }

  /** Columns decoded into arrays a run's views share; ids mapped to indices. */
  function prepare(run) {
    const sp = run.spans || {}, d = run.dict || {};
    const ids = (sp.id || []).slice(), n = ids.length;
    const dec = (col, table) => (col || []).map((c) => (table && table[c] !== undefined ? table[c] : String(c)));
    const R = {
      tid: run.trace_id, run: run, n: n, docN: n, ids: ids, idx: new Map(),
      parent: (sp.parent || []).slice(), pid: new Array(n).fill(null),
      agent: dec(sp.agent, d.agent), type: dec(sp.type, d.type), name: dec(sp.name, d.name),
      status: dec(sp.status, d.status), start: (sp.start || []).slice(), dur: (sp.dur || []).slice(),
      end: new Array(n), tokens: new Map(), crit: new Map(), stack: new Map(), cycleCut: new Set(),
      inline: new Map(), blockCache: new Map(), base: run.start_ns, live: false, colors: new Map(),
    };
    for (let i = 0; i < n; i++) { R.idx.set(ids[i], i); R.end[i] = R.start[i] + R.dur[i]; }
    for (const [k, e] of sp.ext_end || []) R.end[k] = e;
    for (const [k, p, c, cost] of sp.tokens || []) R.tokens.set(k, [p, c, cost]);
    for (let i = 0; i < n; i++) if (R.parent[i] >= 0) R.pid[i] = ids[R.parent[i]];
    const tops = run.tops || {};
    for (const m of tops.missing || []) for (const i of m.spans) R.pid[i] = m.parent_id;
    for (const c of tops.cycles || []) { R.cycleCut.add(c.cut); R.pid[c.cut] = "(cycle)"; }
    indexAnalysis(R);
    link(R);
    return R;
  }

  /** Critical times, stacking marks and agent colours from the run's analysis. */
  function indexAnalysis(R) {
    const run = R.run, crit = run.critical || {};
    R.crit = new Map();
    for (const seg of crit.path || []) {
      const i = R.idx.get(seg.span_id);
      if (i !== undefined) R.crit.set(i, (R.crit.get(i) || 0) + seg.critical_ns);
    }
    R.stack = new Map();
    (crit.stacking || []).forEach((s, k) => {
      for (const role of ["first", "second"]) {
        const i = R.idx.get(s[role].span_id);
        if (i !== undefined && !R.stack.has(i)) R.stack.set(i, { role: role, k: k, s: s });
      }
    });
    R.colors = new Map();
    for (const node of (run.flow || {}).nodes || []) R.colors.set(node.agent, PALETTE[R.colors.size % PALETTE.length]);
  }
  function color(R, agent) {
    if (!R.colors.has(agent)) R.colors.set(agent, PALETTE[R.colors.size % PALETTE.length]);
    return R.colors.get(agent);
  }

  /** Children lists, roots, spans under missing parents, broken cycles; unreachable spans (a cycle that arrived
   * live) are cut at their earliest span. */
  function link(R) {
    const n = R.n, children = new Array(n), roots = [], missing = new Map(), cycles = [];
    for (let i = 0; i < n; i++) {
      const p = R.parent[i];
      if (p >= 0) (children[p] || (children[p] = [])).push(i);
      else if (R.cycleCut.has(i)) cycles.push(i);
      else if (R.pid[i] === null) roots.push(i);
      else (missing.get(R.pid[i]) || missing.set(R.pid[i], []).get(R.pid[i])).push(i);
    }
    const byStart = (a, b) => R.start[a] - R.start[b] || a - b;
    for (const kids of children) {
      if (!kids || kids.length < 2) continue;
      for (let k = 1; k < kids.length; k++) if (byStart(kids[k - 1], kids[k]) > 0) { kids.sort(byStart); break; }
    }
    roots.sort(byStart);
    R.children = children; R.roots = roots; R.missing = missing; R.cycles = cycles;
    const order = preorderAll(R);
    if (order.length < n) {  // parents pointing in a circle: cut at the earliest unreached span, as the CLI does
      const seen = new Uint8Array(n);
      for (const i of order) seen[i] = 1;
      const rest = [];
      for (let i = 0; i < n; i++) if (!seen[i]) rest.push(i);
      rest.sort(byStart);
      const cut = rest[0], p = R.parent[cut];
      R.children[p] = R.children[p].filter((c) => c !== cut);
      R.parent[cut] = -1; R.cycleCut.add(cut);
      return link(R);
    }
    if (R.live) sendEnds(R, order);
    R.bounds = null;
    R.below = new Map();
  }

  function preorderAll(R) {
    const out = [], tops = R.roots.concat(...R.missing.values(), R.cycles);
    for (const t of tops) {
      const stack = [t];
      while (stack.length) {
        const i = stack.pop();
        out.push(i);
        const kids = R.children[i];
        if (kids) for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k]);
      }
    }
    return out;
  }

  /** A SEND span lasts until the work it caused is done (as `tree._effective_ends`). */
  function sendEnds(R, order) {
    for (let k = order.length - 1; k >= 0; k--) {
      const i = order[k];
      if (R.type[i] !== "SEND" || !R.children[i]) continue;
      let e = R.start[i] + R.dur[i];
      for (const c of R.children[i]) if (R.end[c] > e) e = R.end[c];
      R.end[i] = e;
    }
  }

  function runBounds(R) {
    if (R.bounds) return R.bounds;
    R.bounds = computeBounds(R);
    return R.bounds;
  }

  function computeBounds(R) {
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < R.n; i++) { if (R.start[i] < lo) lo = R.start[i]; if (R.end[i] > hi) hi = R.end[i]; }
    if (lo === Infinity) return [0, 1];
    return [lo, Math.max(hi, lo + 1)];
  }

  function sig(R, i) { return R.agent[i] + "\u0000" + R.type[i] + "\u0000" + R.name[i]; }

  /** Siblings of i (same parent, consecutive, same agent/type/name) that would fold with it. */
  function siblingRun(R, i) {
    const p = R.parent[i];
    const kids = p >= 0 ? R.children[p] : null;
    if (!kids) return [i];
    const k = kids.indexOf(i), s = sig(R, i);
    let a = k, b = k;
    while (a > 0 && sig(R, kids[a - 1]) === s) a--;
    while (b + 1 < kids.length && sig(R, kids[b + 1]) === s) b++;
    return kids.slice(a, b + 1);
  }

  // -- rows: what the waterfall lists, after collapsing and folding --------------------------------------------

  function buildRows(R, ui) {
    const kind = [], idx = [], depth = [], folds = [], labels = [];
    const stack = [];
    const pushKids = (kids, d) => {
      const items = [];
      let j = 0;
      while (j < kids.length) {
        let k = j;
        const s = sig(R, kids[j]);
        while (k + 1 < kids.length && sig(R, kids[k + 1]) === s) k++;
        const run = kids.slice(j, k + 1);
        if (run.length >= FOLD_MIN && !ui.unfolded.has(run[0]) && !run.some((x) => R.crit.has(x))) items.push([KIND_FOLD, run, d]);
        else for (const x of run) items.push([KIND_SPAN, x, d]);
        j = k + 1;
      }
      for (let m = items.length - 1; m >= 0; m--) stack.push(items[m]);
    };
    const tops = [];
    for (const r of R.roots) tops.push([KIND_SPAN, r, 0]);
    for (const [pid, group] of R.missing) tops.push([KIND_MISSING, [pid, group], 0]);
    for (const c of R.cycles) tops.push([KIND_CYCLE, c, 0]);
    for (let m = tops.length - 1; m >= 0; m--) stack.push(tops[m]);
    while (stack.length) {
      const [k, payload, d] = stack.pop();
      if (k === KIND_SPAN) {
        kind.push(k); idx.push(payload); depth.push(d);
        const kids = R.children[payload];
        if (kids && !ui.collapsed.has(payload)) pushKids(kids, d + 1);
      } else if (k === KIND_FOLD) {
        kind.push(k); idx.push(folds.length); depth.push(d); folds.push(payload);
      } else if (k === KIND_MISSING) {
        kind.push(k); idx.push(labels.length); depth.push(d);
        labels.push("missing parent " + payload[0] + " (" + payload[1].length + " spans)");
        for (let m = payload[1].length - 1; m >= 0; m--) stack.push([KIND_SPAN, payload[1][m], d + 1]);
      } else {
        kind.push(k); idx.push(labels.length); depth.push(d);
        labels.push("cycle broken here (parent ids loop)");
        stack.push([KIND_SPAN, payload, d + 1]);
      }
    }
    return { kind: kind, idx: idx, depth: depth, folds: folds, labels: labels, length: kind.length };
  }

  function newUi(R) {
    const ui = { collapsed: new Set(), unfolded: new Set(), sel: -1, domain: null, rows: null, wFirst: -1, wLast: -1,
                 findQuery: "", findPos: -1, detailToken: 0 };
    if (R.n > BIG_RUN) collapseBelow(R, ui, 1, true);
    return ui;
  }

  /** Collapse every subtree whose top is at `level` or deeper (the critical path's spans stay open when asked). */
  function collapseBelow(R, ui, level, keepCritical) {
    const order = preorderAll(R);
    const depth = new Int32Array(R.n);
    for (const i of order) if (R.parent[i] >= 0) depth[i] = depth[R.parent[i]] + 1;
    for (const i of order) {
      if (R.children[i] && depth[i] >= level && !(keepCritical && R.crit.has(i))) ui.collapsed.add(i);
    }
  }

  // -- waterfall -----------------------------------------------------------------------------------------------

  function domainOf(R, ui) { return ui.domain || runBounds(R); }

  function renderAxis(R, ui) {
    const [d0, d1] = domainOf(R, ui), axis = $("ad-axis");
    const ticks = Math.max(2, Math.floor((axis.clientWidth || 800) / 90));  // a label needs ~90 px
    const range = d1 - d0, raw = range / ticks, mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const [r0] = runBounds(R);
    let html = "";
    for (let t = Math.ceil((d0 - r0) / step) * step + r0; t <= d1; t += step) {
      html += '<div class="wf-tick" style="left:' + ((100 * (t - d0)) / range).toFixed(3) + '%">+' + esc(fmtNs(t - r0).replace(/\.0+ /, " ")) + "</div>";
    }
    axis.innerHTML = html;
    $("ad-zoom-reset").disabled = !ui.domain;
  }

  function barStyle(s, e, d0, d1) {
    const range = d1 - d0;
    let l = (100 * (s - d0)) / range, w = (100 * (e - s)) / range;
    if (l < 0) { w += l; l = 0; }
    if (l + w > 100) w = 100 - l;
    if (w < 0 || l > 100) return "display:none";
    return "left:" + l.toFixed(3) + "%;width:" + Math.max(w, 0).toFixed(3) + "%";
  }

  function rowHtml(R, ui, r, d0, d1) {
    const rows = ui.rows, k = rows.kind[r], d = rows.depth[r], top = r * ROW_H;
    const pad = 4 + 13 * Math.min(d, 6) + 5 * Math.max(0, Math.min(d, 40) - 6);  // deep trees indent less
    if (k === KIND_SPAN) {
      const i = rows.idx[r], kids = R.children[i];
      const crit = R.crit.has(i), err = R.status[i] === "error", st = R.stack.get(i);
      let attrs = ' data-span-id="' + esc(R.ids[i]) + '"';
      if (crit) attrs += ' data-critical="true"';
      if (err) attrs += ' data-status="error"';
      if (st) attrs += ' data-stacking="' + st.role + '"';
      const twisty = kids ? (ui.collapsed.has(i) ? "closed" : "open") : "";
      const c = color(R, R.agent[i]);
      let marks = "";
      if (err) marks += '<span class="wf-mark err" title="error">✖</span>';
      if (st) marks += '<span class="wf-mark stack" title="latency stacking: could run beside its sibling, saving ' +
        esc(fmtNs(st.s.saving_ns)) + '">∥</span>';
      if (kids && ui.collapsed.has(i)) marks += '<span class="wf-type">+' + countBelow(R, i) + "</span>";
      return '<div class="wf-row' + (ui.sel === i ? " selected" : "") + '" style="top:' + top + 'px" data-row="' + r + '"' + attrs + ">" +
        '<div class="wf-label" style="padding-left:' + pad + 'px"><span class="twisty ' + twisty + '"></span>' +
        '<i class="chip" style="background:' + c + '"></i><span class="wf-agent">' + esc(R.agent[i]) + "</span>" +
        '<span class="wf-type">' + esc(R.type[i]) + '</span><span class="wf-name" title="' + esc(R.name[i]) + '">' +
        esc(R.name[i]) + "</span>" + marks + '<span class="wf-dur">' + esc(fmtNs(R.dur[i])) + "</span></div>" +
        '<div class="wf-track"><div class="wf-bar" style="' + barStyle(R.start[i], R.end[i], d0, d1) + ";background:" + c +
        '"></div></div></div>';
    }
    if (k === KIND_FOLD) {
      const run = rows.folds[rows.idx[r]], i = run[0];
      let lo = Infinity, hi = -Infinity, total = 0, errors = 0;
      for (const x of run) { lo = Math.min(lo, R.start[x]); hi = Math.max(hi, R.end[x]); total += R.dur[x]; errors += R.status[x] === "error"; }
      return '<div class="wf-row fold-row" style="top:' + top + 'px" data-row="' + r + '" data-fold="' + esc(R.ids[i]) +
        '" data-fold-count="' + run.length + '" title="' + run.length + ' similar siblings folded: click to unfold">' +
        '<div class="wf-label" style="padding-left:' + pad + 'px"><span class="twisty closed"></span>' +
        '<i class="chip" style="background:' + color(R, R.agent[i]) + '"></i><span class="wf-agent">' + esc(R.agent[i]) +
        '</span><span class="wf-type">' + esc(R.type[i]) + '</span><span class="wf-name">' + esc(R.name[i]) + " ×" + run.length +
        "</span>" + (errors ? '<span class="wf-mark err">' + errors + " ✖</span>" : "") +
        '<span class="wf-dur">Σ ' + esc(fmtNs(total)) + "</span></div>" +
        '<div class="wf-track"><div class="wf-bar fold" style="' + barStyle(lo, hi, d0, d1) + '"></div></div></div>';
    }
    return '<div class="wf-row virtual" style="top:' + top + 'px" data-row="' + r + '"><div class="wf-label" style="padding-left:' +
      pad + 'px"><span class="twisty open"></span>' + esc(rows.labels[rows.idx[r]]) + '</div><div class="wf-track"></div></div>';
  }

  function countBelow(R, i) {
    if (R.below.has(i)) return R.below.get(i);
    let n = 0;
    const stack = (R.children[i] || []).slice();
    while (stack.length) { const x = stack.pop(); n++; if (R.children[x]) for (const c of R.children[x]) stack.push(c); }
    R.below.set(i, n);
    return n;
  }

  function renderRows(force) {
    const R = S.current, ui = S.ui, canvas = $("ad-wf-canvas"), scroll = $("ad-wf-scroll");
    if (!R) return;
    const total = ui.rows.length;
    canvas.style.height = total * ROW_H + "px";
    if (!total) { canvas.innerHTML = '<div class="wf-empty">no spans yet</div>'; ui.wFirst = ui.wLast = -1; return; }
    let first = 0, last = total;
    if (total > VIRTUAL_MIN) {
      first = Math.max(0, Math.floor(scroll.scrollTop / ROW_H) - OVERSCAN);
      last = Math.min(total, Math.ceil((scroll.scrollTop + scroll.clientHeight) / ROW_H) + OVERSCAN);
    }
    if (!force && first === ui.wFirst && last === ui.wLast) return;
    ui.wFirst = first; ui.wLast = last;
    const [d0, d1] = domainOf(R, ui);
    const parts = [];
    for (let r = first; r < last; r++) parts.push(rowHtml(R, ui, r, d0, d1));
    canvas.innerHTML = parts.join("");
  }

  function rebuild(keepScroll) {
    const R = S.current, ui = S.ui;
    ui.rows = buildRows(R, ui);
    renderAxis(R, ui);
    const scroll = $("ad-wf-scroll");
    if (!keepScroll) scroll.scrollTop = 0;
    renderRows(true);
  }

  function rowOf(i) {
    const rows = S.ui.rows;
    for (let r = 0; r < rows.length; r++) if (rows.kind[r] === KIND_SPAN && rows.idx[r] === i) return r;
    return -1;
  }

  /** Make span i visible: expand its ancestors, unfold the runs that hold it or them. True if anything changed. */
  function reveal(R, ui, i) {
    let x = i, changed = false;
    while (x >= 0) {
      const p = R.parent[x];
      if (p >= 0 && ui.collapsed.delete(p)) changed = true;
      const run = siblingRun(R, x);
      if (run.length >= FOLD_MIN && !ui.unfolded.has(run[0]) && !run.some((y) => R.crit.has(y))) {
        ui.unfolded.add(run[0]);
        changed = true;
      }
      x = p;
    }
    return changed;
  }

  function selectIndex(i, opts) {
    const R = S.current, ui = S.ui;
    if (!R || i < 0 || i >= R.n) return false;
    opts = opts || {};
    ui.sel = i;
    const changed = opts.reveal !== false && reveal(R, ui, i);
    if (changed) ui.rows = buildRows(R, ui);
    const r = rowOf(i), scroll = $("ad-wf-scroll");
    let moved = false;
    if (r >= 0 && opts.scroll !== false) {
      const top = r * ROW_H;
      if (top < scroll.scrollTop || top + ROW_H > scroll.scrollTop + scroll.clientHeight) {
        scroll.scrollTop = Math.max(0, top - scroll.clientHeight / 3);
        moved = true;
      }
    }
    if (changed || moved) renderRows(true);
    else {  // the rows stay: only the selection mark moves (a double click keeps its target)
      for (const el of $("ad-wf-canvas").querySelectorAll(".wf-row.selected")) el.classList.remove("selected");
      const el = $("ad-wf-canvas").querySelector('.wf-row[data-row="' + r + '"]');
      if (el) el.classList.add("selected");
    }
    if (opts.flash) {
      const row = $("ad-wf-canvas").querySelector('.wf-row[data-row="' + r + '"]');
      if (row) row.classList.add("flash");
    }
    showDetails(i);
    return true;
  }

  function zoomTo(i) {
    const R = S.current, ui = S.ui;
    if (i === null || i < 0) ui.domain = null;
    else {
      const s = R.start[i], e = Math.max(R.end[i], s + 1), pad = (e - s) * 0.03;
      ui.domain = [s - pad, e + pad];
    }
    renderAxis(R, ui);
    renderRows(true);
  }

  function onCanvasClick(ev) {
    const row = ev.target.closest(".wf-row");
    if (!row) return;
    const R = S.current, ui = S.ui, r = Number(row.dataset.row), rows = ui.rows;
    const k = rows.kind[r];
    if (k === KIND_FOLD) {
      ui.unfolded.add(rows.folds[rows.idx[r]][0]);
      rebuild(true);
      return;
    }
    if (k !== KIND_SPAN) return;
    const i = rows.idx[r];
    if (ev.target.classList.contains("twisty") && R.children[i]) {
      if (ui.collapsed.has(i)) ui.collapsed.delete(i); else ui.collapsed.add(i);
      rebuild(true);
      return;
    }
    selectIndex(i, { reveal: false, scroll: false });
  }

  function onCanvasDblClick(ev) {
    const row = ev.target.closest(".wf-row[data-span-id]");
    if (row) zoomTo(S.current.idx.get(row.dataset.spanId));
  }

  function find(query) {
    const R = S.current, ui = S.ui, q = query.trim().toLowerCase();
    if (!R || !q) return;
    if (q !== ui.findQuery) { ui.findQuery = q; ui.findPos = -1; }
    for (let step = 1; step <= R.n; step++) {
      const i = (ui.findPos + step) % R.n;
      if (R.name[i].toLowerCase().includes(q) || R.agent[i].toLowerCase().includes(q) ||
          R.ids[i].toLowerCase().startsWith(q) || R.type[i].toLowerCase() === q) {
        ui.findPos = i;
        selectIndex(i, { flash: true });
        return;
      }
    }
    $("ad-find").setCustomValidity("no span matches");
    $("ad-find").reportValidity();
  }

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
    if (!d) {
      const st = R.run.status || "unknown";
      box.innerHTML = '<div class="panel-head"><h2>Why</h2><span class="badge st-' + esc(st) + '">' + esc(st) + "</span></div>" +
        '<div class="muted">' + (R.run.state && R.run.state !== "DONE" ? "not analysed yet (" + esc(R.run.state) + ")" :
          "the run did not fail (status " + esc(st) + "): nothing to explain") + "</div>";
      return;
    }
    const link = (sid, role, label) => '<a class="diag-link" data-span-id="' + esc(sid) + '" data-role="' + role + '">' + esc(label) + "</a>";
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

  // -- message flow: a layered layout written for a handful to a few dozen agents ------------------------------

  /** Layers by breadth-first distance from the agents nothing calls (the run's entry agent, usually): callers
   * left of callees; within a layer, ordered by the mean position of their callers (one barycentre sweep). */
  function layout(nodes, edges) {
    const names = nodes.map((n) => n.agent), pos = new Map(names.map((a, k) => [a, k]));
    const out = new Map(names.map((a) => [a, []])), indeg = new Map(names.map((a) => [a, 0]));
    for (const e of edges) {
      if (e.from === e.to || !pos.has(e.from) || !pos.has(e.to)) continue;
      out.get(e.from).push(e.to);
      indeg.set(e.to, indeg.get(e.to) + 1);
    }
    const layer = new Map();
    const bfs = (starts) => {
      const queue = starts.slice();
      for (const a of starts) layer.set(a, 0);
      while (queue.length) {
        const a = queue.shift();
        for (const b of out.get(a)) if (!layer.has(b)) { layer.set(b, layer.get(a) + 1); queue.push(b); }
      }
    };
    bfs(names.filter((a) => indeg.get(a) === 0));
    for (const a of names) if (!layer.has(a)) bfs([a]);  // agents only reached through a cycle
    const layers = [];
    for (const a of names) (layers[layer.get(a)] || (layers[layer.get(a)] = [])).push(a);
    const rank = new Map();
    layers.forEach((l) => l.forEach((a, k) => rank.set(a, k)));
    for (let L = 1; L < layers.length; L++) {
      const preds = new Map();
      for (const a of names) for (const b of out.get(a)) if (layer.get(a) < L && layer.get(b) === L) (preds.get(b) || preds.set(b, []).get(b)).push(rank.get(a));
      const key = (a) => { const p = preds.get(a); return p ? p.reduce((x, y) => x + y, 0) / p.length : rank.get(a); };
      layers[L].sort((x, y) => key(x) - key(y) || pos.get(x) - pos.get(y));
      layers[L].forEach((a, k) => rank.set(a, k));
    }
    return { layer: layer, layers: layers };
  }

  function edgeWhat(e) {
    return [e.messages ? e.messages + " msg" : "", e.calls ? e.calls + " call" + (e.calls > 1 ? "s" : "") : ""].filter(Boolean).join(" + ");
  }

  /** Path and label point of one edge: forward edges as curves between layers, edges within a layer as arcs
   * on its right, edges back to an earlier layer as curves below. */
  function edgeGeometry(e, L, xy, twin, G) {
    const [x1, y1] = xy.get(e.from), [x2, y2] = xy.get(e.to), W = G.W, H = G.H;
    const l1 = L.layer.get(e.from), l2 = L.layer.get(e.to);
    if (l2 > l1) {
      const sx = x1 + W, sy = y1 + H / 2 - twin, tx = x2, ty = y2 + H / 2 - twin, c = (tx - sx) / 2;
      // the label ends just before the arrow: a fan-out's edges are apart there
      return { d: "M" + sx + "," + sy + " C" + (sx + c) + "," + sy + " " + (tx - c) + "," + ty + " " + tx + "," + ty,
               x: tx - 10, y: ty - 5, anchor: "end" };
    }
    if (l2 === l1) {
      const down = y2 > y1, sx = x1 + W, sy = y1 + H / 2 + (down ? 6 : -6), ty = y2 + H / 2 + (down ? -6 : 6);
      const bulge = Math.min(G.GX - 40, 24 + Math.abs(ty - sy) * 0.28 + (down ? 16 : 0));
      return { d: "M" + sx + "," + sy + " C" + (sx + bulge) + "," + sy + " " + (sx + bulge) + "," + ty + " " + sx + "," + ty,
               x: sx + bulge * 0.75 + 4, y: (sy + ty) / 2 + 4, anchor: "start" };
    }
    const sx = x1 + W / 2 + twin, sy = y1 + H, tx = x2 + W / 2 - twin, ty = y2 + H, dip = 30 + Math.abs(sx - tx) / 8;
    return { d: "M" + sx + "," + sy + " C" + sx + "," + (sy + dip) + " " + tx + "," + (ty + dip) + " " + tx + "," + ty,
             x: (sx + tx) / 2, y: Math.max(sy, ty) + dip * 0.75 + 4 };
  }

  function renderFlow(R) {
    const flow = R.run.flow || {}, nodes = flow.nodes || [], edges = flow.edges || [];
    const box = $("ad-flow");
    if (!nodes.length) { box.innerHTML = '<div class="muted">no agents</div>'; return; }
    const G = { W: 164, H: 46, GX: 140, GY: 22, PAD: 14 };
    const L = layout(nodes, edges), labels = edges.length <= 16;
    const maxRows = Math.max(...L.layers.map((l) => l.length));
    const xy = new Map();
    L.layers.forEach((l, li) => l.forEach((a, k) => {
      const off = ((maxRows - l.length) * (G.H + G.GY)) / 2;
      xy.set(a, [G.PAD + li * (G.W + G.GX), G.PAD + off + k * (G.H + G.GY)]);
    }));
    const back = edges.some((e) => L.layer.get(e.to) < L.layer.get(e.from));
    const width = G.PAD * 2 + L.layers.length * G.W + L.layers.length * G.GX - (labels ? 40 : 80);
    const height = G.PAD * 2 + maxRows * G.H + (maxRows - 1) * G.GY + (back ? 60 : 0);
    const pairs = new Set(edges.map((e) => e.from + "->" + e.to));
    let svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ' + width + " " + height + '" width="' + width + '" height="' + height + '">' +
      '<defs><marker id="ad-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">' +
      '<path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"/></marker></defs>';
    for (const e of edges) {
      if (!xy.has(e.from) || !xy.has(e.to) || e.from === e.to) continue;
      const g = edgeGeometry(e, L, xy, pairs.has(e.to + "->" + e.from) ? 6 : 0, G);
      const what = edgeWhat(e);
      const tip = e.from + " → " + e.to + ": " + what + ", mean latency " + fmtNs(e.latency_ns) + " (max " + fmtNs(e.max_latency_ns) + ")" +
        (e.delivery_ns !== null && e.delivery_ns !== undefined ? ", delivery " + fmtNs(e.delivery_ns) : "") + (e.errors ? ", " + e.errors + " errors" : "");
      svg += '<g class="flow-edge' + (e.errors ? " err" : "") + '" data-edge="' + esc(e.from + "->" + e.to) + '" data-count="' + e.count +
        '" data-first-span="' + esc(e.first_span_id || "") + '"><title>' + esc(tip) + '</title><path d="' + g.d + '" marker-end="url(#ad-arrow)"/>' +
        (labels ? '<text x="' + g.x.toFixed(1) + '" y="' + g.y.toFixed(1) + '" text-anchor="' + (g.anchor || "middle") + '">' +
          esc(what + " · " + fmtNs(e.latency_ns)) + "</text>" : "") + "</g>";
    }
    for (const n of nodes) {
      const [x, y] = xy.get(n.agent), c = color(R, n.agent);
      svg += '<g class="flow-node" data-agent="' + esc(n.agent) + '"' + (n.bottleneck ? ' data-bottleneck="true"' : "") +
        ' data-first-span="' + esc(n.first_span_id || "") + '" transform="translate(' + x + "," + y + ')"><title>' +
        esc(n.agent + ": " + n.spans + " spans, self time " + fmtNs(n.self_ns) + ", critical " + fmtNs(n.critical_ns) + (n.errors ? ", " + n.errors + " errors" : "")) +
        '</title><rect width="' + G.W + '" height="' + G.H + '" rx="6" stroke="' + c + '"/><rect width="6" height="' + G.H + '" rx="3" fill="' + c + '" stroke="none"/>' +
        '<text x="14" y="18">' + esc(n.agent.length > 17 ? n.agent.slice(0, 16) + "…" : n.agent) + "</text>" +
        '<text class="sub" x="14" y="35">' + n.spans + " spans · " + esc(fmtNs(n.critical_ns)) + "</text>" +
        (n.errors ? '<text class="tag" x="' + (G.W - 6) + '" y="35" text-anchor="end">✖ ' + n.errors + "</text>" : "") +
        (n.bottleneck ? '<text class="tag" x="' + (G.W - 6) + '" y="13" text-anchor="end">BOTTLENECK</text>' : "") + "</g>";
    }
    svg += "</svg>";
    if (!labels) {  // too many edges to label on the graph: the busiest ones in a table
      const top = edges.slice().sort((a, b) => b.count - a.count || b.latency_ns - a.latency_ns);
      svg += '<table class="grid"><tr><th>from → to</th><th class="num">messages</th><th class="num">calls</th><th class="num">mean latency</th></tr>' +
        top.slice(0, 12).map((e) => '<tr data-edge-row="' + esc(e.from + "->" + e.to) + '"><td>' + esc(e.from + " → " + e.to) + '</td><td class="num">' +
          e.messages + '</td><td class="num">' + e.calls + '</td><td class="num">' + esc(fmtNs(e.latency_ns)) + "</td></tr>").join("") +
        "</table>" + (top.length > 12 ? '<div class="muted">' + (top.length - 12) + " more edges: hover an edge for its figures</div>" : "");
    }
    box.innerHTML = svg;
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
    let html = '<div class="panel-head"><h2>Runs (' + S.runs.length + ")</h2></div><table>";
    for (const r of S.runs) {
      html += '<tr class="run" data-trace-id="' + esc(r.trace_id) + '" data-state="' + esc(r.state || "") + '" data-status="' + esc(r.status || "") +
        '" aria-selected="' + (S.current && S.current.tid === r.trace_id) + '"><td><div>' + esc(r.workflow || "run") +
        ' <span class="badge st-' + esc(r.status) + '">' + esc(r.status) + '</span></div><div class="rid">' + esc(shortId(r.trace_id)) +
        " · " + esc(fmtNs(r.duration_ns)) + " · " + (r.span_count || 0) + " spans" + (r.state && r.state !== "DONE" ? " · " + esc(r.state) : "") +
        "</div>" + (r.bucket ? '<div><span class="badge bucket">' + esc(r.bucket) + "</span></div>" : "") + "</td></tr>";
    }
    box.innerHTML = html + "</table>";
  }

  function renderNotices(R) {
    const notes = ((S.doc && S.doc.notices) || []).concat((R && R.run.notes) || []);
    const box = $("ad-notices");
    box.hidden = !notes.length;
    box.innerHTML = notes.map((n) => "<div>" + esc(n) + "</div>").join("");
  }

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
      const tids = new Set(todo.map((f) => f()).filter(Boolean));
      if (!S.current && S.runs.length) selectRun(S.runs[0].trace_id);
      else if (S.current && tids.has(S.current.tid)) selectRun(S.current.tid, true);
      else renderRuns();
    }, 0);
  }

  /** Merge one change. Types: {type:"doc", doc} | {type:"runs", runs:[entry]} | {type:"run", trace_id, run}
   * | {type:"spans", trace_id, spans:[span]} | {type:"state", trace_id, state, status?}. */
  function applyUpdate(u) {
    if (!u || !u.type) throw new Error("an update needs a type");
    if (u.type === "doc") { render(u.doc); return; }
    if (!S.doc) render({ mode: "live", runs: [], data: {}, notices: [] });
    queueRender(() => {
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
        return u.trace_id;
      }
      if (u.type === "spans") { appendSpans(u.trace_id, u.spans || []); return u.trace_id; }
      if (u.type === "state") {
        const raw = S.raw.get(u.trace_id) || (S.raw.set(u.trace_id, emptyRun(u.trace_id)), S.raw.get(u.trace_id));
        raw.state = u.state;
        if (u.status) raw.status = u.status;
        upsertRun({ trace_id: u.trace_id, state: u.state, ...(u.status ? { status: u.status } : {}) });
        return u.trace_id;
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
    window.addEventListener("resize", () => { if (S.ui) { renderAxis(S.current, S.ui); renderRows(true); } });
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
})();
