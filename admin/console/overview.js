// Overview: the live nodes, their figures and 15-minute charts, fed by
// GET /v1/info/stream.

import { h, num, duration } from "./ui.js";
import { chartPanel, draw } from "./chart.js";

/** The chart windows offered, in seconds; the rings keep 15 minutes. */
const SPANS = [[60, "1 min"], [300, "5 min"], [900, "15 min"]];

const METRICS = [
  ["published_per_second", "Published / s"],
  ["delivered_per_second", "Delivered / s"],
  ["sessions", "Sessions"],
  ["subscriptions", "Subscriptions"],
];

/** Renders the overview into main from store (see app.js) until the returned cleanup. */
export function overview(main, store) {
  const tbody = h("tbody");
  const table = h("table", { id: "nodes" },
    h("caption.muted", { text: "Live nodes (updated every second)" }),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Node"), h("th", { scope: "col" }, "Version"), h("th", { scope: "col" }, "Uptime"),
      h("th.num", { scope: "col" }, "Sessions"), h("th.num", { scope: "col" }, "Subscriptions"), h("th.num", { scope: "col" }, "Topics"),
      h("th.num", { scope: "col" }, "Published / s"), h("th.num", { scope: "col" }, "Delivered / s"))),
    tbody);
  const totals = h("p.muted", { id: "totals" });
  const charts = METRICS.map(([k, title]) => ({ k, ...chartPanel(title, "chart-" + k) }));
  const spans = h("div.spans", { role: "group", "aria-label": "Chart window" },
    SPANS.map(([sec, label]) => h("button", { type: "button", "data-span": sec, "aria-pressed": String(sec === store.span),
      onclick: () => { store.span = sec; render(); } }, label)));
  main.replaceChildren(
    h("h1", {}, "Overview"),
    h("section.panel", {}, totals, table),
    h("div.spans-row", {}, h("span.muted", { text: "Charts:" }), spans),
    h("div.grid", {}, charts.map((c) => c.panel)));

  function render() {
    const nodes = store.nodes;
    tbody.replaceChildren(...nodes.map((n) => h("tr", { "data-node": n.id },
      h("th", { scope: "row" }, h("code", {}, n.id)),
      h("td", { text: n.version || "–" }),
      h("td", { text: duration(n.uptime) }),
      h("td.num", { "data-k": "sessions", text: num(n.sessions) }),
      h("td.num", { "data-k": "subscriptions", text: num(n.subscriptions) }),
      h("td.num", { "data-k": "topics", text: num(n.topics) }),
      h("td.num", { "data-k": "published_per_second", text: num(n.published_per_second, true) }),
      h("td.num", { "data-k": "delivered_per_second", text: num(n.delivered_per_second, true) }))));
    if (!nodes.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "muted", text: "Waiting for the live feed…" })));
    const sum = (k) => nodes.reduce((a, n) => a + (n[k] || 0), 0);
    totals.textContent = `${nodes.length} node${nodes.length === 1 ? "" : "s"} · ${num(sum("sessions"))} sessions · ` +
      `${num(sum("published_per_second"), true)} published / s · ${num(sum("delivered_per_second"), true)} delivered / s`;
    for (const b of spans.children) b.setAttribute("aria-pressed", String(+b.dataset.span === store.span));
    const ids = store.ids();
    for (const c of charts) {
      draw(c.svg, ids.map((id) => ({ name: id, ring: store.ring(id, c.k) })), store.span);
      c.legend.replaceChildren(...ids.map((id, i) => h("span.s" + (i % 6), { text: id })));
    }
  }
  render();
  return store.listen(render);
}
