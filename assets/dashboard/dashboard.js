// powergate dashboard: polls /agent/metrics at the rate the profile allows
// (its power sampling interval), pauses while the tab is hidden, draws with uPlot.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const headers = token ? { "X-Powergate-Token": token } : {};
  const COLORS = { performance: "#e8590c", balanced: "#1c7ed6", "battery-saver": "#2f9e44" };
  const OUTCOME_COLORS = { "miss": "#868e96", "hit-memory": "#2f9e44", "hit-disk": "#1c7ed6", "hit-redis": "#7048e8",
                           "typeahead": "#f59f00", "coalesced": "#e64980", "bypass": "#495057" };
  const HITS = ["hit-memory", "hit-disk", "hit-redis", "typeahead", "coalesced"];
  const OUTCOMES = ["miss"].concat(HITS, ["bypass"]);
  const charts = {};
  let timer = null;
  let intervalMs = 5000;
  let last = null;

  const $ = (id) => document.getElementById(id);
  const fmt = (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const label = (p) => ({ performance: "Performance", balanced: "Balanced", "battery-saver": "Battery saver" }[p] || p);

  function chart(id, series, opts = {}) {
    const el = $(id);
    const width = Math.max(300, el.clientWidth || 420);
    // The x axis always shows at least the last 10 minutes, so a few points do not stretch it to years.
    const xRange = (u, min, max) => {
      const now = Date.now() / 1000;
      return [Math.min(min ?? now - 600, now - 600), Math.max(max ?? now, now)];
    };
    const scales = Object.assign({}, opts.scales || {}, { x: { time: true, range: xRange } });
    const cfg = Object.assign({ width, height: 200, series: [{}].concat(series), axes: [{}, {}], legend: { show: true } }, opts, { scales });
    const empty = [[]].concat(series.map(() => []));
    charts[id] = new uPlot(cfg, empty, el);
    return charts[id];
  }

  function setupCharts() {
    chart("chart-latency", [
      { label: "p50", stroke: "#2f9e44", width: 2 },
      { label: "p95", stroke: "#f59f00", width: 2 },
      { label: "p99", stroke: "#e03131", width: 2 },
    ]);
    chart("chart-hits", HITS.map((o) => ({ label: o, stroke: OUTCOME_COLORS[o], width: 2 })),
          { scales: { y: { range: [0, 1] } } });
    chart("chart-requests", OUTCOMES.map((o) => ({ label: o, stroke: OUTCOME_COLORS[o], width: 2 })));
    chart("chart-power", [
      { label: "battery %", stroke: "#212529", width: 2 },
      { label: "CPU %", stroke: "#adb5bd", width: 1 },
    ], {
      scales: { y: { range: [0, 100] } },
      hooks: { drawClear: [drawProfileBands] },
    });
    $("legend-profiles").innerHTML = Object.keys(COLORS)
      .map((p) => `<span><i style="background:${COLORS[p]}"></i>${label(p)}</span>`).join("");
  }

  // The profile timeline as coloured bands behind the battery curve.
  function drawProfileBands(u) {
    if (!last) return;
    const ctx = u.ctx;
    const pts = last.power || [];
    const now = Date.now() / 1000;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.globalAlpha = 0.15;
    for (let i = 0; i < pts.length; i++) {
      const t0 = pts[i].at;
      const t1 = i + 1 < pts.length ? pts[i + 1].at : now;
      const x0 = u.valToPos(t0, "x", true);
      const x1 = u.valToPos(t1, "x", true);
      ctx.fillStyle = COLORS[pts[i].profile] || "#868e96";
      const a = Math.max(left, x0), b = Math.min(left + width, x1);
      if (b > a) ctx.fillRect(a, top, b - a, height);
    }
    ctx.restore();
  }

  function render(m) {
    last = m;
    const badge = $("profile-badge");
    badge.textContent = label(m.profile);
    badge.dataset.profile = m.profile;
    $("mode").textContent = m.mode === "auto" ? "automatic" : "manual";
    document.querySelectorAll("#switch button").forEach((b) => {
      const on = b.dataset.mode ? m.mode === "auto" : (m.profile === b.dataset.profile && m.mode !== "auto");
      b.classList.toggle("active", on);
    });
    intervalMs = Math.max(2000, (m.interval_s || 5) * 1000);

    const p = (m.power || [])[Math.max(0, (m.power || []).length - 1)];
    if (p) {
      $("power-source").textContent = p.plugged ? "on AC" : "on battery";
      $("power-battery").textContent = p.percent === null ? "no battery" : `${fmt(p.percent, 0)}%` + (p.battery_saver ? " (OS saver)" : "");
      $("power-cpu").textContent = `${fmt(p.cpu_percent, 0)}%`;
      $("power-ram").textContent = `${fmt(p.ram_available_mb / 1024, 1)} GB`;
    }
    $("upstreams").innerHTML = m.upstream.health.map((u) =>
      `<li><span class="${u.reachable ? "ok" : "down"}">${u.reachable ? "up" : (u.reachable === false ? "down" : "unknown")}</span> ${u.url}` +
      (u.version ? ` <span class="muted">Ollama ${u.version}</span>` : "") + `</li>`).join("") +
      `<li class="muted">tokens/s p50 ${fmt(m.upstream.tokens_per_second_p50)} · loads last hour ${m.upstream.loads_last_hour}</li>`;
    $("tiers").querySelector("tbody").innerHTML = m.cache.tiers.map((t) =>
      `<tr><td>${t.name}${t.available ? "" : ' <span class="down">unavailable</span>'}</td><td>${t.hit_ratio === null ? "–" : (100 * t.hit_ratio).toFixed(0) + "%"}</td>` +
      `<td>${t.entries}</td><td>${fmt(t.bytes / 1048576, 1)}</td></tr>`).join("");
    $("cache-extra").textContent = `typeahead ${m.cache.typeahead_hits} · coalesced ${m.cache.coalesced} · reloads avoided ${m.counters.reloads_avoided}` +
      (m.cache.paused ? " · PAUSED" : "");
    $("recommendations").innerHTML = m.recommendations.length
      ? m.recommendations.map((r) => `<li class="reco" data-id="${r.id}">${r.message} <span class="muted">(${r.figure.name} = ${r.figure.value})</span></li>`).join("")
      : '<li class="muted">Nothing to change: all figures are within their limits.</li>';
    $("latency").querySelector("tbody").innerHTML = m.latency.map((r) =>
      `<tr><td>${r.endpoint}</td><td>${r.outcome}</td><td>${r.count}</td><td>${fmt(r.p50_ms, 2)}</td><td>${fmt(r.p95_ms, 2)}</td><td>${fmt(r.p99_ms, 2)}</td></tr>`).join("");
    $("timeline").innerHTML = m.timeline.slice(-12).reverse().map((h) =>
      `<li><time>${new Date(h.at * 1000).toLocaleTimeString()}</time> ${h.previous ? label(h.previous) + " → " : ""}<b>${label(h.profile)}</b> <span class="muted">${h.reason} (${h.source})</span></li>`).join("");

    // A leading empty point ten minutes back keeps a fresh chart's x axis to minutes.
    const pad = { t: Date.now() / 1000 - 600, p50: null, p95: null, p99: null, hit_ratio: {}, by_outcome: {} };
    const s = (m.series.length && m.series[0].t <= pad.t) ? m.series : [pad].concat(m.series);
    const xs = s.map((b) => b.t);
    const ms = (v) => (v === null ? null : v * 1000);
    charts["chart-latency"].setData([xs, s.map((b) => ms(b.p50)), s.map((b) => ms(b.p95)), s.map((b) => ms(b.p99))]);
    charts["chart-hits"].setData([xs].concat(HITS.map((o) => s.map((b) => b.hit_ratio[o] ?? null))));
    charts["chart-requests"].setData([xs].concat(OUTCOMES.map((o) => s.map((b) => (b === pad ? null : b.by_outcome[o] || 0)))));
    const raw = m.power || [];
    const pw = raw.length && raw[0].at <= pad.t ? raw : [{ at: pad.t, percent: null, cpu_percent: null }].concat(raw);
    charts["chart-power"].setData([pw.map((q) => q.at), pw.map((q) => q.percent), pw.map((q) => q.cpu_percent)]);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()} · every ${intervalMs / 1000} s (the profile's sampling interval)`;
    document.body.dataset.ready = "1";
  }

  async function refresh() {
    try {
      const r = await fetch("/agent/metrics", { headers });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      render(await r.json());
      $("error").textContent = "";
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
    if (!r.ok) $("error").textContent = (await r.json()).error;
    refresh();
  }

  document.querySelectorAll("#switch button").forEach((b) => b.addEventListener("click", () =>
    switchTo(b.dataset.mode ? { mode: b.dataset.mode } : { profile: b.dataset.profile })));
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); else clearTimeout(timer); });
  setupCharts();
  refresh();
})();
