// powergate dashboard: the "Suggestions under load" card (preemption, speculation, slots).
// Fed by GET /agent/status -> scheduling.preemption and scheduling.speculation; pushed onto
// window.powergate.cards (dashboard.js, loaded before this file). Text only, via el().
"use strict";
(function () {
  const pg = window.powergate;
  if (!pg || !Array.isArray(pg.cards)) return;
  const el = pg.el;
  const num = (v, d = 0) => (typeof v === "number" && isFinite(v) ? v.toFixed(d) : "–");
  pg.cards.push({
    id: "card-interactive", title: "Suggestions under load",
    render: (s) => {
      const sch = s.scheduling || {};
      const pre = sch.preemption || {};
      const spec = sch.speculation || { models: {} };
      const pf = sch.prefetch || {};
      const models = Object.entries(spec.models || {});
      return [
        el("dl", { class: "facts" },
          el("dt", null, "Preemption"), el("dd", { id: "preempt-state" }, pre.enabled ? "on" : "off (profile)"),
          el("dt", null, "Paused / resumed"), el("dd", { id: "preempt-counts" }, `${num(pre.paused)} / ${num(pre.resumed)}`),
          el("dt", null, "Time paused"), el("dd", { id: "preempt-time" }, `${num(pre.paused_s, 1)} s`),
          el("dt", null, "Slots kept after abort"), el("dd", { id: "abort-holds" }, num(pre.held_after_abort)),
          el("dt", null, "Prefetch used / wasted"),
          el("dd", { id: "prefetch-outcomes" }, `${num(pf.prefetch_used)} / ${num(pf.prefetch_wasted)} (skipped ${num(pf.prefetch_skipped)})`)),
        el("table", { id: "speculation" },
          el("thead", null, el("tr", null, el("th", null, "model"),
            el("th", { class: "num", title: "share of the last guesses that were used" }, "used"),
            el("th", { class: "num", title: "break-even share the model needs" }, "needs"),
            el("th", { class: "num", title: "outcomes in the window" }, "seen"), el("th", null, "state"))),
          el("tbody", null, models.length
            ? models.map(([m, r]) => el("tr", { data: { model: String(m) } },
                el("td", null, String(m)),
                el("td", { class: "num" }, r.used_share === null ? "–" : `${Math.round(r.used_share * 100)}%`),
                el("td", { class: "num", title: r.measured ? "break-even share from measured model time" : "default until measured" },
                  r.threshold === undefined ? "–" : `${Math.round(r.threshold * 100)}%${r.measured ? "" : "*"}`),
                el("td", { class: "num" }, num(r.outcomes)),
                el("td", null, String(r.decision))))
            : el("tr", null, el("td", { class: "muted" }, "no speculative guesses yet")))),
        el("p", { class: "muted" }, `guesses are made while the share of the last ${num(spec.window)} that were used stays at least the model's break-even share (guess cost / suggestion cost, measured; * = ${Math.round((spec.min_used_share || 0) * 100)}% until measured)`),
      ];
    },
  });
})();
