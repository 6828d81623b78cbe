// Topics: the topics with subscribers on any node, busiest first, a page
// at a time, filtered by a pattern.

import { get } from "./api.js";
import { h, num, pager, rowLink, toast } from "./ui.js";

/** Topics shown per page; the page asks for one more to know if there is a next. */
export const PAGE = 50;

export function topics(main, params) {
  const pattern = params.get("pattern") || "";
  const page = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
  const input = h("input", { name: "pattern", id: "pattern", value: pattern, placeholder: "e.g. chat.> or prices.*.usd", size: 30 });
  const form = h("form.inline", { id: "topics-filter", role: "search" },
    h("label", { for: "pattern" }, "Pattern", input),
    h("button.primary", { type: "submit" }, "Filter"),
    pattern ? h("a", { href: "#/topics" }, "Clear") : null);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    go(input.value.trim(), 0);
  });
  const body = h("div", { id: "topics-body" }, h("p.muted", { text: "Loading…" }));
  main.replaceChildren(h("h1", {}, "Topics"), h("section.panel", {}, form, body));

  function go(p, pg) {
    const q = new URLSearchParams();
    if (p) q.set("pattern", p);
    if (pg) q.set("page", String(pg));
    location.hash = "#/topics" + (q.size ? "?" + q : "");
  }

  let live = true;
  get("/v1/topics", { pattern, limit: PAGE + 1, offset: page * PAGE }).then((res) => {
    if (!live) return;
    const list = res.topics.slice(0, PAGE);
    const more = res.topics.length > PAGE;
    if (!list.length) {
      body.replaceChildren(h("p.muted", { text: page ? "No more topics." : "No topic has subscribers" + (pattern ? " matching " + pattern : "") + "." }),
        page ? pager(page, false, (pg) => go(pattern, pg)) : "");
      return;
    }
    const rows = list.map((t, i) => rowLink(h("tr", { "data-topic": t.topic },
      h("td.num.muted", { text: String(page * PAGE + i + 1) }),
      h("td", {}, h("a", { href: "#/topic/" + encodeURIComponent(t.topic) }, t.topic)),
      h("td.num", { text: num(t.subscribers) })), () => { location.hash = "#/topic/" + encodeURIComponent(t.topic); }));
    body.replaceChildren(
      h("table", { id: "topics" },
        h("thead", {}, h("tr", {}, h("th.num", { scope: "col" }, "#"), h("th", { scope: "col" }, "Topic"), h("th.num", { scope: "col" }, "Subscribers"))),
        h("tbody", {}, rows)),
      pager(page, more, (pg) => go(pattern, pg)));
    performance.mark("topics-painted");
  }).catch((err) => {
    if (!live) return;
    body.replaceChildren(h("p.error", { role: "alert", text: "Could not list the topics: " + err.message }));
    toast(err.message, "error");
  });
  return () => { live = false; };
}
