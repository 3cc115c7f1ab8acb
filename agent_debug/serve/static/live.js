/* agent-debug serve: the live view's bootstrap (agent_debug/serve/live.py).
 *
 * The page is the report's own (agent_debug/report/static); this script only feeds it through its public entry
 * points (window.AgentDebugReport, docs/report.md):
 *   - opens the event stream (/api/events?batch=1) first, then loads the first document (/api/live) and renders
 *     it; events that came meanwhile are applied after it, in order (a span already shown is not added twice,
 *     and the last state event of a run is its current state);
 *   - `spans` -> applyUpdate spans, `run` -> the run-list row, `state` -> the run's state (upper case, as the
 *     page's data-state); a run whose analysis is DONE has its data fetched (/api/runs/ID/report) if shown;
 *   - follows the newest run (each run that attaches is shown) until a run or a span is clicked, or the page
 *     was opened as /#run=ID;
 *   - a span's details come from /api/runs/ID/spans/SPAN when the page holds none.
 * Every request goes to this server with the page's cookie (the token's login, see app.BearerAuth).
 */
(function () {
  "use strict";
  const LIVE = { follow: true, ready: false, pending: [], loaded: new Set(), loading: new Set(), details: new Map(),
                 broken: false, es: null };
  window.AgentDebugLive = LIVE;

  const AD = () => window.AgentDebugReport;
  const up = (s) => String(s || "").toUpperCase();
  const enc = encodeURIComponent;

  function api(path) {
    return fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then((r) => r.json().catch(() => ({})).then((body) => {
        if (!r.ok) throw new Error((body && body.error) || "HTTP " + r.status + " for " + path);
        return body;
      }));
  }

  function pinned() {
    const m = /(?:^#|&)run=([^&]+)/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function shown() { return AD().state().trace_id; }

  function setFollow(on) {
    LIVE.follow = on;
    const box = document.getElementById("ad-follow");
    if (box) box.checked = on;
  }

  const CONN_COLORS = { live: "#22c55e", connecting: "#eab308", reconnecting: "#eab308", closed: "#ef4444" };

  function setConn(state) {
    const el = document.getElementById("ad-live");
    if (!el) return;
    el.dataset.conn = state;
    el.innerHTML = '<i style="display:inline-block;width:8px;height:8px;border-radius:4px;margin-right:5px;background:' +
      (CONN_COLORS[state] || "#9ca3af") + '"></i>' + state;
    el.title = state === "live" ? "receiving events as they happen" : "event stream: " + state;
  }

  function notice(text) {
    const box = document.getElementById("ad-notices");
    box.hidden = false;
    const div = document.createElement("div");
    div.textContent = text;
    box.appendChild(div);
  }

  function entryOf(s) {
    return { trace_id: s.trace_id, workflow: s.workflow, status: s.status, state: up(s.state), start_ns: s.start_ns,
             duration_ns: s.duration_ns, span_count: s.span_count, error_spans: s.error_spans, agents: s.agents };
  }

  function loadRun(tid, select) {
    if (LIVE.loading.has(tid)) return;
    LIVE.loading.add(tid);
    api("/api/runs/" + enc(tid) + "/report").then((b) => {
      AD().applyUpdate({ type: "run", trace_id: b.trace_id, run: b.run });
      AD().applyUpdate({ type: "runs", runs: [b.entry] });
      if (select) AD().applyUpdate({ type: "select", trace_id: b.trace_id });
      LIVE.loaded.add(b.trace_id);
    }).catch((e) => notice("could not load run " + tid + ": " + e.message))
      .finally(() => LIVE.loading.delete(tid));
  }

  function apply(kind, d) {
    const ad = AD();
    if (kind === "spans" || kind === "span") {
      ad.applyUpdate({ type: "spans", trace_id: d.trace_id, spans: kind === "spans" ? d.spans : [d] });
    } else if (kind === "run") {
      ad.applyUpdate({ type: "runs", runs: [entryOf(d)] });
    } else if (kind === "state") {
      const st = up(d.state), res = d.results || null;
      const u = { type: "state", trace_id: d.trace_id, state: st };
      if (res && res.status) u.status = res.status;
      ad.applyUpdate(u);
      if (st === "ATTACHED" && LIVE.follow) ad.applyUpdate({ type: "select", trace_id: d.trace_id });
      if (st === "RECORDING") LIVE.loaded.delete(d.trace_id);  // reopened: its analysis is out of date
      if (st === "DONE") {
        if (res && !res.error) {
          const rc = res.root_cause || {};
          ad.applyUpdate({ type: "runs", runs: [{ trace_id: d.trace_id, bucket: res.bucket || null,
                                                  root_cause_span_id: rc.span_id || null }] });
        }
        LIVE.loaded.delete(d.trace_id);
        if (shown() === d.trace_id || (LIVE.follow && !shown())) loadRun(d.trace_id, false);
      }
    }
  }

  function onEvent(kind, ev) {
    let d;
    try { d = JSON.parse(ev.data); } catch (e) { return; }
    if (!LIVE.ready) LIVE.pending.push([kind, d]);
    else apply(kind, d);
  }

  function loadDoc(pin) {
    api("/api/live" + (pin ? "?run=" + enc(pin) : "")).then((doc) => {
      AD().render(doc);
      for (const tid of Object.keys(doc.data || {})) LIVE.loaded.add(tid);
    }).catch((e) => notice("could not load the runs: " + e.message)).finally(() => {
      LIVE.ready = true;
      const todo = LIVE.pending;
      LIVE.pending = [];
      for (const [k, d] of todo) apply(k, d);
    });
  }

  /** After the stream broke: the run list and the shown run again, as updates (the view stays as it is). */
  function resync() {
    const tid = shown();
    api("/api/live" + (tid ? "?run=" + enc(tid) : "")).then((doc) => {
      AD().applyUpdate({ type: "runs", runs: doc.runs.slice().reverse() });
      for (const [t, run] of Object.entries(doc.data || {})) {
        AD().applyUpdate({ type: "run", trace_id: t, run: run });
        LIVE.loaded.add(t);
      }
    }).catch((e) => notice("could not reload the runs: " + e.message));
  }

  function openStream(then) {
    const es = new EventSource("/api/events?batch=1");
    LIVE.es = es;
    let first = true;
    for (const kind of ["spans", "span", "run", "state"]) es.addEventListener(kind, (ev) => onEvent(kind, ev));
    es.addEventListener("open", () => {
      setConn("live");
      if (first) { first = false; then(); }
      else if (LIVE.broken) { LIVE.broken = false; resync(); }
    });
    es.addEventListener("error", () => {
      LIVE.broken = true;
      setConn(es.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
      if (first) { first = false; then(); }  // no stream (yet): show what is stored anyway
    });
  }

  function addControls() {
    const head = document.getElementById("ad-header");
    const box = document.createElement("div");
    box.className = "ad-live-controls";
    box.style.cssText = "display:flex;gap:10px;align-items:center;margin-left:auto;font-size:12px;white-space:nowrap";
    box.innerHTML = '<span id="ad-live"></span>' +
      '<label title="show each new run as it starts"><input type="checkbox" id="ad-follow" checked> follow new runs</label>';
    head.appendChild(box);
    setConn("connecting");
    document.getElementById("ad-follow").addEventListener("change", (ev) => {
      LIVE.follow = ev.target.checked;
      if (LIVE.follow) {
        const runs = document.querySelectorAll("#ad-runs tr.run[data-trace-id]");
        if (runs.length) AD().applyUpdate({ type: "select", trace_id: runs[0].dataset.traceId });
      }
    });
  }

  function boot() {
    const ad = AD();
    if (!ad) return;
    ad.setDetailLoader((tid, sid) => {
      const key = tid + "\u0000" + sid;
      if (!LIVE.details.has(key)) {
        LIVE.details.set(key, api("/api/runs/" + enc(tid) + "/spans/" + enc(sid)).then((b) => b.detail,
          (e) => { LIVE.details.delete(key); throw e; }));
      }
      return LIVE.details.get(key);
    });
    addControls();
    // a click picks what to look at: stop following (captured before the page's own handlers)
    document.getElementById("ad-runs").addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr.run[data-trace-id]");
      if (!tr) return;
      setFollow(false);
      if (!LIVE.loaded.has(tr.dataset.traceId)) loadRun(tr.dataset.traceId, true);
    }, true);
    document.getElementById("ad-wf-canvas").addEventListener("click", () => setFollow(false), true);
    const pin = pinned();
    if (pin) setFollow(false);
    openStream(() => loadDoc(pin));
  }

  document.addEventListener("DOMContentLoaded", boot);
})();
