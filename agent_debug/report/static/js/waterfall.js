// The waterfall: time axis, virtualized rows, selection, reveal, zoom, search.

// -- waterfall -----------------------------------------------------------------------------------------------

function domainOf(R, ui) { return ui.domain || (isLive(R) ? liveDomain(R) : runBounds(R)); }

/** A run still recording (the live view): its spans keep arriving. */
function isLive(R) { return R.live && R.run.state !== "DONE" && R.run.state !== "IDLE"; }

/** While a run records, the time axis ends at a round length past its last span (1, 2, 5 x 10^k ns), so a new
 * span seldom moves every bar: most updates add a row and leave the others as they are. */
function liveDomain(R) {
  const [lo, hi] = runBounds(R), span = Math.max(1, (hi - lo) * 1.05);
  const mag = Math.pow(10, Math.floor(Math.log10(span)));
  const len = [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= span) || 10 * mag;
  return [lo, lo + len];
}

function renderAxis(R, ui) {
  const [d0, d1] = domainOf(R, ui), axis = $("ad-axis");
  if (!S.axisWidth) S.axisWidth = axis.clientWidth || 800;  // read once (and on resize): reading it forces a layout
  const key = d0 + " " + d1 + " " + S.axisWidth;
  $("ad-zoom-reset").disabled = !ui.domain;
  if (axis.dataset.key === key) return;
  axis.dataset.key = key;
  const ticks = Math.max(2, Math.floor(S.axisWidth / 90));  // a label needs ~90 px
  const range = d1 - d0, raw = range / ticks, mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const [r0] = runBounds(R);
  let html = "";
  for (let t = Math.ceil((d0 - r0) / step) * step + r0; t <= d1; t += step) {
    html += '<div class="wf-tick" style="left:' + ((100 * (t - d0)) / range).toFixed(3) + '%">+' + esc(fmtNs(t - r0).replace(/\.0+ /, " ")) + "</div>";
  }
  axis.innerHTML = html;
}

function barStyle(s, e, d0, d1) {
  const range = d1 - d0;
  let l = (100 * (s - d0)) / range, w = (100 * (e - s)) / range;
  if (l < 0) { w += l; l = 0; }
  if (l + w > 100) w = 100 - l;
  if (w < 0 || l > 100) return "display:none";
  return "left:" + l.toFixed(3) + "%;width:" + Math.max(w, 0).toFixed(3) + "%";
}

/** Row r as [key, html]: the html holds everything but its position (`top`, `data-row`), which `renderRows`
 * sets, so a row that only moved is kept as it is. */
function rowHtml(R, ui, r, d0, d1) {
  const rows = ui.rows, k = rows.kind[r], d = rows.depth[r];
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
    return ["s" + i, '<div class="wf-row' + (ui.sel === i ? " selected" : "") + '"' + attrs + ">" +
      '<div class="wf-label" style="padding-left:' + pad + 'px"><span class="twisty ' + twisty + '"></span>' +
      '<i class="chip" style="background:' + c + '"></i><span class="wf-agent">' + esc(R.agent[i]) + "</span>" +
      '<span class="wf-type">' + esc(R.type[i]) + '</span><span class="wf-name" title="' + esc(R.name[i]) + '">' +
      esc(R.name[i]) + "</span>" + marks + '<span class="wf-dur">' + esc(fmtNs(R.dur[i])) + "</span></div>" +
      '<div class="wf-track"><div class="wf-bar" style="' + barStyle(R.start[i], R.end[i], d0, d1) + ";background:" + c +
      '"></div></div></div>'];
  }
  if (k === KIND_FOLD) {
    const run = rows.folds[rows.idx[r]], i = run[0];
    let lo = Infinity, hi = -Infinity, total = 0, errors = 0;
    for (const x of run) { lo = Math.min(lo, R.start[x]); hi = Math.max(hi, R.end[x]); total += R.dur[x]; errors += R.status[x] === "error"; }
    return ["f" + i, '<div class="wf-row fold-row" data-fold="' + esc(R.ids[i]) +
      '" data-fold-count="' + run.length + '" title="' + run.length + ' similar siblings folded: click to unfold">' +
      '<div class="wf-label" style="padding-left:' + pad + 'px"><span class="twisty closed"></span>' +
      '<i class="chip" style="background:' + color(R, R.agent[i]) + '"></i><span class="wf-agent">' + esc(R.agent[i]) +
      '</span><span class="wf-type">' + esc(R.type[i]) + '</span><span class="wf-name">' + esc(R.name[i]) + " ×" + run.length +
      "</span>" + (errors ? '<span class="wf-mark err">' + errors + " ✖</span>" : "") +
      '<span class="wf-dur">Σ ' + esc(fmtNs(total)) + "</span></div>" +
      '<div class="wf-track"><div class="wf-bar fold" style="' + barStyle(lo, hi, d0, d1) + '"></div></div></div>'];
  }
  return ["v" + k + rows.labels[rows.idx[r]], '<div class="wf-row virtual"><div class="wf-label" style="padding-left:' +
    pad + 'px"><span class="twisty open"></span>' + esc(rows.labels[rows.idx[r]]) + '</div><div class="wf-track"></div></div>'];
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
  if (!total) {
    canvas.innerHTML = '<div class="wf-empty">no spans yet</div>';
    S.rowEls = new Map();
    ui.wFirst = ui.wLast = -1;
    return;
  }
  let first = 0, last = total;
  if (total > VIRTUAL_MIN) {
    first = Math.max(0, Math.floor(scroll.scrollTop / ROW_H) - OVERSCAN);
    last = Math.min(total, Math.ceil((scroll.scrollTop + scroll.clientHeight) / ROW_H) + OVERSCAN);
  }
  if (!force && first === ui.wFirst && last === ui.wLast) return;
  ui.wFirst = first; ui.wLast = last;
  const [d0, d1] = domainOf(R, ui);
  const items = [];
  for (let r = first; r < last; r++) items.push(rowHtml(R, ui, r, d0, d1));
  S.rowEls = reconcile(canvas, items, S.rowEls, (el, n) => {
    const r = first + n, top = r * ROW_H + "px";
    if (el.style.top !== top) el.style.top = top;
    if (el.dataset.row !== String(r)) el.dataset.row = r;
  });
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
