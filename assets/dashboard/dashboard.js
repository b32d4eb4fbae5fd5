// powergate dashboard. Polls GET /agent/status (the savings figures and the cards) and
// GET /agent/metrics (charts, latency table, timeline) at the rate the profile allows (its
// power sampling interval), pauses while the tab is hidden, draws with uPlot.
//
// Every value from the agent is rendered as text (el() below: textContent and text
// nodes, never HTML parsing), so a profile reason, an upstream's version string or a
// model name can never become markup. The page runs under a strict
// Content-Security-Policy (no inline script or style).
//
// Adding a card: one entry in CARDS, { id, title, render(status) -> nodes }, fed by
// the /agent/status document. Another script (loaded after this one) can also push
// onto window.powergate.cards; build nodes with window.powergate.el.
"use strict";
(function () {
  // The control token comes once in the URL (?token=..., from the tray); it is kept for
  // this tab only and taken out of the address bar, history and any Referer at once.
  const TOKEN_KEY = "powergate-token";
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("token") || "");
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  const headers = token ? { "X-Powergate-Token": token } : {};

  const COLORS = { performance: "#e8590c", balanced: "#1c7ed6", "battery-saver": "#2f9e44" };
  const OUTCOME_COLORS = { "miss": "#868e96", "hit-memory": "#2f9e44", "hit-disk": "#1c7ed6", "hit-redis": "#7048e8",
                           "typeahead": "#f59f00", "coalesced": "#e64980", "bypass": "#495057" };
  const HITS = ["hit-memory", "hit-disk", "hit-redis", "typeahead", "coalesced"];
  const OUTCOMES = ["miss"].concat(HITS, ["bypass"]);
  const CHART_HEIGHT = 180;
  const MIN_SPAN_S = 60;  // a time axis with a single point still spans a minute
  const charts = {};
  let timer = null;
  let intervalMs = 5000;
  let lastMetrics = null;

  const $ = (id) => document.getElementById(id);

  // A DOM node from a tag, a few properties and children; strings become text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") node.className = v;
      else if (k === "data") Object.assign(node.dataset, v);
      else if (k === "style") Object.assign(node.style, v);
      else node.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  const isNum = (v) => typeof v === "number" && isFinite(v);
  const fmt = (v, d = 1) => (isNum(v) ? Number(v).toFixed(d) : "–");
  const int = (v) => (isNum(v) ? Math.round(v).toLocaleString("en-US") : "–");
  const pct = (v) => (isNum(v) ? `${Math.round(100 * v)}%` : "–");
  const label = (p) => ({ performance: "Performance", balanced: "Balanced", "battery-saver": "Battery saver" }[p] || String(p));
  function duration(s) {
    if (!isNum(s)) return "–";
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  function size(bytes) {
    if (!isNum(bytes)) return "–";
    if (bytes < 1000) return `${bytes} bytes`;
    if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
    if (bytes < 1e9) return `${(bytes / 1e6).toFixed(1)} MB`;
    return `${(bytes / 1e9).toFixed(1)} GB`;
  }
  function energy(wh) {
    if (!isNum(wh)) return "–";
    if (wh === 0) return "0 Wh";
    return wh < 1 ? `≈ ${(wh * 1000).toFixed(wh < 0.01 ? 1 : 0)} mWh` : `≈ ${wh.toFixed(2)} Wh`;
  }

  // ---------------------------------------------------------------- savings (top)
  const SAVINGS = [
    ["requests", "Requests served", (s) => s.requests, int],
    ["served_without_model", "Answered without the model", (s) => (s.requests ? s.served_without_model / s.requests : null),
     (v, s) => (isNum(v) ? `${pct(v)} (${int(s.served_without_model)})` : "–")],
    ["model_time_saved_s", "Model time saved", (s) => s.model_time_saved_s, duration],
    ["upstream_calls_avoided", "Upstream calls avoided", (s) => s.upstream_calls_avoided, int],
    ["energy_saved_wh", "Energy saved (estimate)", (s) => s.energy_saved_wh, energy],
  ];

  function renderSavings(sv) {
    for (const [period, figures] of [["total", sv], ["today", sv.today || {}]]) {
      const dl = document.querySelector(`#savings dl[data-period="${period}"]`);
      const name = dl.querySelector(".period-name");
      const rows = [];
      for (const [key, title, pick, show] of SAVINGS) {
        const v = pick(figures);
        rows.push(el("dt", null, title),
                  el("dd", { class: key === "requests" ? "big" : "", data: { key, value: String(figures[key] ?? "") } },
                     show(v, figures)));
      }
      dl.replaceChildren(name, ...rows);
    }
    $("savings-note").replaceChildren(
      "Model time saved is what the upstream spent on the answers that hits, typeahead and shared calls replaced. " +
      `Energy is an estimate: model time saved × ${fmt(sv.model_watts, 0)} W ([savings] model_watts in the config).`);
  }

  function renderEmpty(status, m) {
    const none = !(status.savings && status.savings.requests) && !(m && m.latency && m.latency.length);
    const box = $("empty");
    box.hidden = !none;
    if (none) {
      box.replaceChildren(
        el("b", null, "No requests yet. "),
        "Point your editor's Ollama URL at ", el("code", null, String(status.listen || "http://127.0.0.1:11435")),
        " (", el("code", null, "powergate doctor"), " prints ready-to-paste editor config); the figures and charts fill in as you work.");
    }
  }

  // ---------------------------------------------------------------- cards (fed by /agent/status)
  const CARDS = [
    {
      id: "card-power", title: "Power",
      render: (s) => {
        const p = s.power;
        if (!p) return [el("p", { class: "muted" }, "No power reading yet.")];
        return [el("dl", { class: "facts" },
          el("dt", null, "Source"), el("dd", { id: "power-source" }, p.plugged ? "on AC" : "on battery"),
          el("dt", null, "Battery"), el("dd", { id: "power-battery" },
            p.percent === null ? "no battery" : `${fmt(p.percent, 0)}%` + (p.battery_saver ? " (OS saver)" : "")),
          el("dt", null, "CPU"), el("dd", { id: "power-cpu" }, `${fmt(p.cpu_percent, 0)}%`),
          el("dt", null, "RAM free"), el("dd", { id: "power-ram" }, `${fmt(p.ram_available_mb / 1024, 1)} GB`))];
      },
    },
    {
      id: "card-upstream", title: "Upstreams",
      render: (s) => [el("ul", { id: "upstreams" }, (s.upstreams || []).map((u) => el("li", null,
        el("span", { class: u.reachable ? "ok" : "down" }, u.reachable ? "up" : (u.reachable === false ? "down" : "unknown")),
        " ", String(u.url),
        u.version ? el("span", { class: "muted" }, ` ${u.kind && u.kind !== "ollama" ? u.kind : "Ollama"} ${u.version}`) : null,
        u.reachable === false && u.error ? el("div", { class: "muted" }, String(u.error)) : null)))],
    },
    {
      id: "card-cache", title: "Cache",
      render: (s) => {
        const c = s.cache || { tiers: [] };
        const rows = c.tiers.map((t) => {
          const looked = t.hits + t.misses;
          return el("tr", { data: { tier: t.name } },
            el("td", null, String(t.name), t.available ? null : el("span", { class: "down" }, " unavailable")),
            el("td", { class: "num" }, looked ? pct(t.hits / looked) : "–"),
            el("td", { class: "num" }, int(t.entries)),
            el("td", { class: "num" }, size(t.bytes)));
        });
        const ta = c.typeahead || {};
        return [
          el("table", { id: "tiers" }, el("thead", null, el("tr", null, el("th", null, "tier"), el("th", { class: "num" }, "hit ratio"),
            el("th", { class: "num" }, "entries"), el("th", { class: "num" }, "size"))), el("tbody", null, rows)),
          el("p", { id: "cache-extra", class: "muted" },
            `typeahead ${int(ta.hits)} · coalesced ${int(c.coalesced)} · reloads avoided ${int((s.routing || {}).reloads_avoided)}` +
            (s.cache_paused ? " · PAUSED" : "")),
        ];
      },
    },
    {
      id: "card-reco", title: "Recommendations",
      render: (s) => [el("ul", { id: "recommendations" }, (s.recommendations || []).length
        ? s.recommendations.map((r) => el("li", { class: "reco", data: { id: String(r.id) } }, String(r.message), " ",
            el("span", { class: "muted" }, `(${r.figure.name} = ${r.figure.value})`)))
        : el("li", { class: "muted" }, "Nothing to change: all figures are within their limits."))],
    },
  ];

  function renderCards(status) {
    const host = $("cards");
    for (const card of CARDS) {
      let box = $(card.id);
      if (!box) {
        box = el("div", { class: "card", id: card.id });
        host.append(box);
      }
      let nodes;
      try {
        nodes = [].concat(card.render(status));
      } catch (e) {
        nodes = [el("p", { class: "error" }, `cannot show this card: ${e.message}`)];
      }
      box.replaceChildren(el("h2", null, card.title), ...nodes);
    }
  }

  // ---------------------------------------------------------------- charts (fed by /agent/metrics)
  // The time axis spans the data the chart has (at least a minute), nothing more.
  function xRange(u, min, max) {
    const now = Date.now() / 1000;
    const hi = isNum(max) ? max : now;
    const lo = isNum(min) ? Math.min(min, hi - MIN_SPAN_S) : hi - MIN_SPAN_S;
    return [lo, hi];
  }

  // One line per tick, minutes (with seconds when the chart spans under ten minutes).
  function timeLabels(u, ticks) {
    const span = (u.scales.x.max || 0) - (u.scales.x.min || 0);
    const opts = span < 600 ? { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }
      : { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    return ticks.map((t) => new Date(t * 1000).toLocaleTimeString([], opts));
  }

  function chart(id, series, opts = {}) {
    const host = $(id);
    const cfg = {
      width: Math.max(200, host.clientWidth),
      height: CHART_HEIGHT,
      padding: [10, 28, 0, 0],  // room for the last time label
      series: [{}].concat(series),
      legend: { show: false },  // our own legend shows the latest values (uPlot's shows "--" until hovered)
      scales: Object.assign({ x: { time: true, auto: false, range: xRange } }, opts.scales || {}),
      axes: [{ space: 80, values: timeLabels }, { size: 48 }],
      hooks: opts.hooks || {},
    };
    const u = new uPlot(cfg, [[]].concat(series.map(() => [])), host);
    charts[id] = { u, series, legendValue: opts.legendValue || "last", unit: opts.unit || "" };
    return u;
  }

  function setupCharts() {
    chart("chart-latency", [
      { label: "p50", stroke: "#2f9e44", width: 2 },
      { label: "p95", stroke: "#f59f00", width: 2 },
      { label: "p99", stroke: "#e03131", width: 2 },
    ], { unit: " ms" });
    chart("chart-hits", HITS.map((o) => ({ label: o, stroke: OUTCOME_COLORS[o], width: 2 })),
          { scales: { y: { range: [0, 1] } }, unit: "%" });
    chart("chart-requests", OUTCOMES.map((o) => ({ label: o, stroke: OUTCOME_COLORS[o], width: 2 })), { legendValue: "sum" });
    chart("chart-power", [
      { label: "battery", stroke: "#495057", width: 2 },
      { label: "CPU", stroke: "#adb5bd", width: 1 },
    ], { scales: { y: { range: [0, 100] } }, hooks: { drawClear: [drawProfileBands] }, unit: "%" });
    $("legend-profiles").replaceChildren(...Object.keys(COLORS).map((p) =>
      el("span", null, el("i", { style: { background: COLORS[p], opacity: "0.35" } }), label(p))));
    const fit = () => {
      for (const id of Object.keys(charts)) {
        const w = Math.max(200, $(id).clientWidth);
        if (charts[id].u.width !== w) charts[id].u.setSize({ width: w, height: CHART_HEIGHT });
      }
    };
    if (window.ResizeObserver) new ResizeObserver(fit).observe(document.querySelector(".charts"));
    window.addEventListener("resize", fit);
  }

  // The profile in force as coloured bands behind the battery curve.
  function drawProfileBands(u) {
    if (!lastMetrics) return;
    const pts = lastMetrics.power || [];
    const now = Date.now() / 1000;
    const { left, top, width, height } = u.bbox;
    const ctx = u.ctx;
    ctx.save();
    ctx.globalAlpha = 0.15;
    for (let i = 0; i < pts.length; i++) {
      const x0 = u.valToPos(pts[i].at, "x", true);
      const x1 = u.valToPos(i + 1 < pts.length ? pts[i + 1].at : now, "x", true);
      ctx.fillStyle = COLORS[pts[i].profile] || "#868e96";
      const a = Math.max(left, x0), b = Math.min(left + width, x1);
      if (b > a) ctx.fillRect(a, top, b - a, height);
    }
    ctx.restore();
  }

  function setChart(id, data) {
    const c = charts[id];
    c.u.setData(data);
    // uPlot widens a single point's time axis to days; span the data we have instead
    const xs = data[0];
    if (xs.length) {
      const [lo, hi] = xRange(c.u, xs[0], xs[xs.length - 1]);
      c.u.setScale("x", { min: lo, max: hi });
    }
    const host = $(id);
    const hasData = data[0].length > 0 && data.slice(1).some((s) => s.some(isNum));
    let note = host.querySelector(".nodata");
    if (!hasData && !note) host.append(el("div", { class: "nodata" }, "No data yet"));
    if (hasData && note) note.remove();
    const legend = document.querySelector(`.legend[data-for="${id}"]`);
    legend.replaceChildren(...c.series.map((s, i) => {
      const values = data[i + 1].filter(isNum);
      let v = null;
      if (values.length) v = c.legendValue === "sum" ? values.reduce((a, b) => a + b, 0) : values[values.length - 1];
      const shown = !isNum(v) ? "–" : (c.unit === "%" && id === "chart-hits" ? pct(v)
        : `${v >= 100 || c.legendValue === "sum" ? Math.round(v) : v.toFixed(v < 10 ? 2 : 1)}${c.unit}`);
      return el("span", { data: { series: s.label } }, el("i", { style: { background: s.stroke } }), `${s.label} `, el("b", null, shown));
    }));
    if (c.legendValue === "sum") legend.append(el("span", { class: "muted" }, "(requests in the last hour)"));
  }

  function renderCharts(m) {
    const s = m.series || [];
    const xs = s.map((b) => b.t);
    const ms = (v) => (isNum(v) ? v * 1000 : null);
    setChart("chart-latency", [xs, s.map((b) => ms(b.p50)), s.map((b) => ms(b.p95)), s.map((b) => ms(b.p99))]);
    setChart("chart-hits", [xs].concat(HITS.map((o) => s.map((b) => (b.hit_ratio || {})[o] ?? null))));
    setChart("chart-requests", [xs].concat(OUTCOMES.map((o) => s.map((b) => (b.by_outcome || {})[o] || 0))));
    const pw = m.power || [];
    setChart("chart-power", [pw.map((q) => q.at), pw.map((q) => q.percent), pw.map((q) => q.cpu_percent)]);
  }

  function renderLatency(m) {
    $("latency").querySelector("tbody").replaceChildren(...(m.latency || []).map((r) => el("tr", null,
      el("td", null, String(r.endpoint)), el("td", null, String(r.outcome)), el("td", { class: "num" }, int(r.count)),
      el("td", { class: "num" }, fmt(r.p50_ms, 2)), el("td", { class: "num" }, fmt(r.p95_ms, 2)),
      el("td", { class: "num" }, fmt(r.p99_ms, 2)))));
  }

  // The timeline says each change once: "A → B" for a switch, the reason for a mode or
  // cache change, and a run of identical entries collapsed into one with a count.
  function renderTimeline(m) {
    const items = [];
    for (const h of m.timeline || []) {
      const what = h.previous && h.previous !== h.profile ? `${label(h.previous)} → ${label(h.profile)}`
        : (h.reason === "start" ? `started in ${label(h.profile)}` : label(h.profile));
      const why = h.reason === "start" ? "" : String(h.reason);
      const prev = items[items.length - 1];
      if (prev && prev.what === what && prev.why === why && prev.source === h.source) {
        prev.count += 1;
        prev.at = h.at;
      } else {
        items.push({ what, why, source: String(h.source), at: h.at, count: 1 });
      }
    }
    $("timeline").replaceChildren(...items.slice(-12).reverse().map((it) => el("li", null,
      el("time", null, new Date(it.at * 1000).toLocaleTimeString()), " ", el("b", null, it.what), " ",
      el("span", { class: "muted" }, it.why ? `${it.why} (${it.source})` : `(${it.source})`),
      it.count > 1 ? el("span", { class: "muted" }, ` ×${it.count}`) : null)));
  }

  function renderHeader(status) {
    const badge = $("profile-badge");
    badge.textContent = label(status.profile);
    badge.dataset.profile = String(status.profile);
    $("mode").textContent = status.mode === "auto" ? "automatic" : "manual";
    document.querySelectorAll("#switch button").forEach((b) => {
      const on = b.dataset.mode ? status.mode === "auto" : (status.profile === b.dataset.profile && status.mode !== "auto");
      b.classList.toggle("active", on);
    });
  }

  async function getJSON(path) {
    const r = await fetch(path, { headers, cache: "no-store" });
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return r.json();
  }

  async function refresh() {
    try {
      const [status, m] = await Promise.all([getJSON("/agent/status"), getJSON("/agent/metrics")]);
      lastMetrics = m;
      intervalMs = Math.max(2000, (m.interval_s || 5) * 1000);
      renderHeader(status);
      if (status.savings) renderSavings(status.savings);
      renderEmpty(status, m);
      renderCards(status);
      renderCharts(m);
      renderLatency(m);
      renderTimeline(m);
      $("updated").textContent = `updated ${new Date().toLocaleTimeString()} · every ${intervalMs / 1000} s (the profile's sampling interval)`;
      $("error").textContent = "";
      document.body.dataset.ready = "1";
    } catch (e) {
      $("error").textContent = `cannot reach the agent: ${e.message}`;
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    if (!document.hidden) timer = setTimeout(refresh, intervalMs);
  }

  async function switchTo(body) {
    const r = await fetch("/agent/profile", { method: "PUT", headers: Object.assign({ "Content-Type": "application/json" }, headers),
                                              body: JSON.stringify(Object.assign({ source: "dashboard" }, body)) });
    if (!r.ok) {
      const doc = await r.json().catch(() => ({}));
      $("error").textContent = String((doc.error && doc.error.message) || doc.error || `HTTP ${r.status}`);
    }
    refresh();
  }

  document.querySelectorAll("#switch button").forEach((b) => b.addEventListener("click", () =>
    switchTo(b.dataset.mode ? { mode: b.dataset.mode } : { profile: b.dataset.profile })));
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); else clearTimeout(timer); });
  window.powergate = { cards: CARDS, el, refresh, charts: () => Object.fromEntries(Object.entries(charts).map(([k, c]) => [k, c.u])) };
  setupCharts();
  refresh();
})();
