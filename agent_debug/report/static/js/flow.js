// The message-flow graph: a layered layout written for a handful to a few dozen agents, drawn as SVG.

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
