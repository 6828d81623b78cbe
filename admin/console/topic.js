// Topic: a live tail of its messages, its history, presence and stats,
// and a form to publish to it.

import { get, post, credential, isJWT } from "./api.js";
import { h, num, toast } from "./ui.js";

/** The most messages the live tail keeps on the page. */
const TAIL = 200;

export function topic(main, name) {
  const cleanups = [];
  main.replaceChildren(
    h("h1", {}, "Topic ", h("code", { id: "topic-name" }, name)),
    h("p", {}, h("a", { href: "#/topics" }, "← All topics")),
    h("div.grid", {}, tailPanel(name, cleanups), publishPanel(name)),
    h("div.grid", {}, presencePanel(name), historyPanel(name)));
  return () => cleanups.forEach((fn) => fn());
}

function tailPanel(name, cleanups) {
  const status = h("p.muted", { id: "tail-status", role: "status", text: "Connecting…" });
  const list = h("ol.tail", { id: "tail", "aria-live": "polite", "aria-label": "Messages as they arrive, newest first" });
  const panel = h("section.panel", { "aria-labelledby": "tail-h" }, h("h2", { id: "tail-h" }, "Live tail"), status, list);
  let client = null;
  let stopped = false;
  cleanups.push(() => { stopped = true; if (client) client.close(); });
  import("/v1/client.js").then(({ Tidings }) => {
    if (stopped) return;
    const cred = credential();
    client = new Tidings(undefined, isJWT(cred) ? { token: cred } : {});
    client.addEventListener("state", () => {
      if (client.state === "open") status.textContent = `Subscribed through session ${client.session} on ${client.node}.`;
      else if (client.state === "reconnecting") status.textContent = "Reconnecting…";
    });
    client.addEventListener("error", (e) => {
      const err = e.error || e;
      const refused = err.code === "unauthorized" || err.code === "forbidden" || err.status === 401 || err.status === 403;
      status.className = "error";
      status.textContent = refused
        ? "The live tail needs a client token this node accepts (it requires one for WebSocket sessions" +
          (isJWT(cred) ? ", and refused this JWT" : "") + "). History below still works."
        : "Live tail: " + (err.message || "error");
    });
    client.subscribe(name, (m) => {
      list.prepend(h("li", { "data-offset": m.offset },
        h("span.muted", { text: `#${m.offset} ${new Date(m.time).toLocaleTimeString()} ` }), JSON.stringify(m.data)));
      while (list.childElementCount > TAIL) list.lastElementChild.remove();
    });
  }).catch((err) => {
    status.className = "error";
    status.textContent = "The client library could not be loaded: " + err.message;
  });
  return panel;
}

function publishPanel(name) {
  const area = h("textarea", { id: "publish-data", name: "data", "aria-describedby": "publish-check", spellcheck: "false" });
  area.value = '{"text": "hello"}';
  const check = h("p.muted", { id: "publish-check", role: "status", text: "Valid JSON." });
  const result = h("p", { id: "publish-result", role: "status" });
  const validate = () => {
    try {
      JSON.parse(area.value);
      area.setCustomValidity("");
      check.className = "muted";
      check.textContent = "Valid JSON.";
      return true;
    } catch (e) {
      area.setCustomValidity("not valid JSON");
      check.className = "error";
      check.textContent = "Not valid JSON: " + e.message;
      return false;
    }
  };
  area.addEventListener("input", validate);
  const form = h("form", { id: "publish", novalidate: true },
    h("label", { for: "publish-data" }, "Message (JSON)", area), check,
    h("p", {}, h("button.primary", { type: "submit" }, "Publish")), result);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!validate()) return;
    if (isJWT(credential())) {
      // POST /v1/publish takes API keys only: a JWT sent there would
      // count as a wrong key against this address.
      result.className = "error";
      result.textContent = "Not published: an admin JWT may not publish. Sign in with an API key that may publish to this topic.";
      return;
    }
    try {
      const res = await post("/v1/publish", { topic: name, data: JSON.parse(area.value) });
      result.className = "ok";
      result.textContent = `Published at offset ${res.offset}.`;
    } catch (err) {
      result.className = "error";
      result.textContent = "Not published: " + err.message;
    }
  });
  return h("section.panel", { "aria-labelledby": "publish-h" }, h("h2", { id: "publish-h" }, "Publish"), form);
}

function presencePanel(name) {
  const stats = h("p", { id: "presence-stats", text: "Loading…" });
  const list = h("ul", { id: "presence" });
  const panel = h("section.panel", { "aria-labelledby": "presence-h" },
    h("h2", { id: "presence-h" }, "Presence"), stats, list,
    h("button", { type: "button", onclick: () => load() }, "Refresh"));
  async function load() {
    try {
      const st = await get("/v1/presence/stats", { topic: name });
      stats.textContent = `${num(st.sessions)} sessions, ${num(st.users)} users.`;
      const p = await get("/v1/presence", { topic: name, limit: 100 });
      list.replaceChildren(...p.clients.map((c) => h("li", {},
        h("a", { href: "#/sessions?session=" + encodeURIComponent(c.session) }, h("code", {}, c.session)),
        ` ${c.user || "(anonymous)"} on ${c.node}`)));
      if (p.total > p.clients.length) list.append(h("li.muted", { text: `… and ${num(p.total - p.clients.length)} more` }));
    } catch (err) {
      stats.className = err.status === 400 ? "muted" : "error";
      stats.textContent = err.status === 400 ? "Presence is off for this topic." : "Presence: " + err.message;
    }
  }
  load();
  return panel;
}

function historyPanel(name) {
  const f = {
    since: h("input", { name: "since", id: "h-since", inputmode: "numeric", size: 8, placeholder: "offset" }),
    epoch: h("input", { name: "epoch", id: "h-epoch", size: 12, placeholder: "epoch" }),
    limit: h("input", { name: "limit", id: "h-limit", type: "number", min: 1, max: 100, value: 20 }),
    reverse: h("input", { name: "reverse", id: "h-reverse", type: "checkbox", checked: true }),
  };
  const info = h("p.muted", { id: "history-info" });
  const tbody = h("tbody");
  const form = h("form.inline", { id: "history-form" },
    h("label", { for: "h-since" }, "Since offset", f.since),
    h("label", { for: "h-epoch" }, "Epoch", f.epoch),
    h("label", { for: "h-limit" }, "Limit", f.limit),
    h("label.check", { for: "h-reverse" }, f.reverse, "Newest first"),
    h("button.primary", { type: "submit" }, "Read"));
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  async function load() {
    const params = { topic: name, limit: Math.min(100, Math.max(1, +f.limit.value || 20)), reverse: f.reverse.checked ? "true" : "" };
    if (f.since.value.trim()) {
      params.since = f.since.value.trim();
      params.epoch = f.epoch.value.trim();
    }
    try {
      const res = await get("/v1/history", params);
      if (!f.epoch.value) f.epoch.value = res.epoch;
      info.textContent = `Offset ${res.offset}, epoch ${res.epoch}` + (res.recovered === false ? " — not recovered: that epoch is gone." : "");
      tbody.replaceChildren(...res.messages.map((m) => h("tr", {},
        h("td.num", { text: m.offset }), h("td", { text: new Date(m.time).toLocaleTimeString() }), h("td.mono", { text: JSON.stringify(m.data) }))));
    } catch (err) {
      info.className = "error";
      info.textContent = "History: " + err.message;
    }
  }
  load();
  return h("section.panel", { "aria-labelledby": "history-h" }, h("h2", { id: "history-h" }, "History"), form, info,
    h("table", { id: "history" }, h("thead", {}, h("tr", {}, h("th.num", { scope: "col" }, "Offset"), h("th", { scope: "col" }, "Time"),
      h("th", { scope: "col" }, "Data"))), tbody));
}
