// powergate dashboard: the routing, LightRAG and database cards. Fed by GET /agent/status
// (upstreams[].routing: score, parts, state, lightrag, database); pushed onto window.powergate.cards
// (dashboard.js, loaded before this file). Text only, via el(): no value becomes markup.
"use strict";
(function () {
  const pg = window.powergate;
  if (!pg || !Array.isArray(pg.cards)) return;
  const el = pg.el;
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const num = (v, d = 0) => (isNum(v) ? v.toFixed(d) : "–");
  const yes = (v) => (v === true ? "yes" : v === false ? "no" : "unknown");

  pg.cards.push({
    id: "card-routing", title: "Hosts and routing",
    render: (s) => {
      const hosts = s.upstreams || [];
      if (!hosts.length) return [el("p", { class: "muted" }, "No upstream configured.")];
      return [
        el("table", { id: "routing" },
          el("thead", null, el("tr", null, el("th", null, "host"), el("th", null, "state"),
            el("th", { class: "num" }, "score"), el("th", null, "parts"))),
          el("tbody", null, hosts.map((u) => {
            const r = u.routing || {};
            const state = r.state || {};
            const st = state.state || (u.reachable ? "up" : "unknown");
            const p = r.parts || {};
            const parts = `cold ${num(p.cold_s, 1)} · queue ${num(p.queue_s, 1)} · first token ${num(p.first_token_s, 2)}` +
              ` · generate ${num(p.generate_s, 1)} · memory ${num(p.memory_s, 1)} · weight ${num(p.weight)}` +
              ` · power ${num(p.power_s, 1)}`;
            return el("tr", { data: { url: String(u.url) } },
              el("td", null, String(u.url), u.local ? el("span", { class: "muted" }, " (this laptop)") : null),
              el("td", null, el("span", { class: st === "up" ? "ok" : "down" }, String(st)),
                isNum(state.resting_for_s) ? ` ${num(state.resting_for_s, 0)} s` : null),
              el("td", { class: "num" }, num(r.score, 2)),
              el("td", { class: "muted" }, parts));
          }))),
        el("p", { class: "muted" }, "Lowest score serves: the seconds a suggestion is expected to wait there."),
      ];
    },
  });

  pg.cards.push({
    id: "card-lightrag", title: "LightRAG",
    render: (s) => {
      const l = s.lightrag;
      if (!l) return [el("p", { class: "muted" }, "Not configured ([lightrag] url).")];
      const q = l.query_cache || {};
      return [el("dl", { class: "facts" },
        el("dt", null, "Reachable"), el("dd", { id: "lightrag-reachable" }, yes(l.reachable), l.error ? ` (${l.error})` : ""),
        el("dt", null, "Version"), el("dd", null, String(l.core_version || "–")),
        el("dt", null, "Pipeline"), el("dd", { id: "lightrag-pipeline" }, l.pipeline_busy ? "indexing" : "idle"),
        el("dt", null, "Corpus version"), el("dd", { id: "lightrag-corpus" }, String(l.corpus_version || "–")),
        el("dt", null, "Query cache"), el("dd", { id: "lightrag-cache" },
          `${num(q.hits)} hits · ${num(q.misses)} misses · ${num(q.coalesced)} shared`))];
    },
  });

  pg.cards.push({
    id: "card-database", title: "Postgres / pgvector",
    render: (s) => {
      const d = s.database;
      if (!d) return [el("p", { class: "muted" }, "Not configured ([postgres] dsn).")];
      const t = d.tuning || {};
      return [el("dl", { class: "facts" },
        el("dt", null, "Database"), el("dd", null, String(d.target || "–")),
        el("dt", null, "Reachable"), el("dd", { id: "db-reachable" }, yes(d.reachable), d.error ? ` (${d.error})` : ""),
        el("dt", null, "Connections"), el("dd", { id: "db-connections" }, `${num(d.connections)} of ${num(d.max_connections)}`),
        el("dt", null, "Findings"), el("dd", { id: "db-findings" },
          `${num(d.findings)}`, (d.finding_ids || []).length ? ` (${d.finding_ids.join(", ")})` : ""),
        el("dt", null, "ef_search"), el("dd", { id: "db-ef" },
          t.consented ? `${num(t.ef_search_applied)} for ${t.role || "the role"}` : "not tuned (run powergate db apply)"))];
    },
  });
})();
