// One run's model: the document's columns decoded, ids mapped to indices, the tree linked (live spans too);
// the rows the waterfall lists after collapsing and folding.

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
