// Sessions: find a user's sessions, or one session by id, on every node,
// and disconnect, unsubscribe or revoke them after a confirmation.

import { get, post } from "./api.js";
import { h, duration, confirmDialog, rowLink, toast } from "./ui.js";

/** The most sessions one search shows. */
const LIMIT = 100;

export function sessions(main, params) {
  const by = params.get("session") ? "session" : "user";
  const value = params.get(by) || "";
  const kind = h("select", { name: "by", id: "by" },
    h("option", { value: "user", selected: by === "user" }, "User"),
    h("option", { value: "session", selected: by === "session" }, "Session id"));
  const input = h("input", { name: "q", id: "q", value, required: true, size: 36, placeholder: "user id (the token's sub) or session id" });
  const form = h("form.inline", { id: "sessions-find", role: "search" },
    h("label", { for: "by" }, "Find by", kind), h("label", { for: "q" }, "Value", input),
    h("button.primary", { type: "submit" }, "Find"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ [kind.value]: input.value.trim() });
    const next = "#/sessions?" + q;
    if (location.hash === next) load();
    else location.hash = next;
  });
  const body = h("div", { id: "sessions-body" });
  main.replaceChildren(h("h1", {}, "Sessions"), h("section.panel", {}, form, body));
  if (!value) {
    body.replaceChildren(h("p.muted", { text: "Enter a user id or a session id to find its live sessions on every node." }));
    input.focus();
    return null;
  }
  let live = true;
  async function load() {
    body.replaceChildren(h("p.muted", { text: "Searching every node…" }));
    try {
      const res = await get("/v1/sessions", { [by]: value, limit: LIMIT });
      if (live) render(res.sessions);
    } catch (err) {
      if (live) body.replaceChildren(h("p.error", { role: "alert", text: "Could not search: " + err.message }));
    }
  }
  function render(list) {
    const head = h("p", { id: "sessions-summary" },
      `${list.length} live session${list.length === 1 ? "" : "s"}${list.length === LIMIT ? " (the first " + LIMIT + ")" : ""} of ${by} `,
      h("code", {}, value), ". ");
    if (by === "user" && list.length) {
      head.append(h("button.danger", { type: "button", "data-action": "disconnect-user",
        onclick: () => disconnect({ user: value }, "every session of user " + value) }, "Disconnect all"), " ");
    }
    if (by === "user") {
      // A revocation also refuses the user's next connects: it applies
      // with or without live sessions.
      head.append(h("button.danger", { type: "button", "data-action": "revoke-user", onclick: () => revoke(value) }, "Revoke user"));
    }
    if (!list.length) {
      body.replaceChildren(head);
      return;
    }
    const now = Date.now();
    const rows = list.map((s) => rowLink(h("tr", { "data-session": s.session },
      h("td", {}, h("code", {}, s.session)),
      h("td", { text: s.user || "(anonymous)" }),
      h("td", {}, h("code", {}, s.node)),
      h("td", { text: s.transport }),
      h("td.mono", { text: s.remote }),
      h("td", {}, h("div.subs", {}, s.subscriptions.map((t) => h("span", {},
        h("a", { href: "#/topic/" + encodeURIComponent(t) }, t),
        h("button.small", { type: "button", "aria-label": `Unsubscribe ${s.session} from ${t}`, "data-action": "unsubscribe",
          onclick: () => unsubscribe(s.session, t) }, "×")))),
        s.subscriptions_total > s.subscriptions.length ? h("span.muted", { text: ` … ${s.subscriptions_total} in all` }) : ""),
      h("td", { text: duration((now - Date.parse(s.connected_at)) / 1000) }),
      h("td", {}, h("button.danger", { type: "button", "data-action": "disconnect", onclick: () => disconnect({ session: s.session }, "session " + s.session) }, "Disconnect"))),
    () => { location.hash = "#/sessions?session=" + encodeURIComponent(s.session); }));
    body.replaceChildren(head, h("table", { id: "sessions" },
      h("thead", {}, h("tr", {}, ["Session", "User", "Node", "Transport", "Remote", "Subscriptions", "Age", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows)));
  }
  async function act(path, body, done) {
    try {
      await post(path, body);
      toast(done, "ok");
    } catch (err) {
      toast(`${path} failed: ${err.message}`, "error");
    }
    // Actions take effect on every node within a second: look again
    // now and once that second has passed.
    if (live) load();
    setTimeout(() => { if (live) load(); }, 1000);
  }
  async function disconnect(target, what) {
    const code = h("input", { type: "number", name: "code", id: "dc-code", min: 4000, max: 4999, value: 4000, required: true });
    const reason = h("input", { name: "reason", id: "dc-reason", maxlength: 123, placeholder: "disconnected" });
    const v = await confirmDialog("Disconnect", `Close ${what}? Codes 4000–4499 let clients reconnect; 4500–4999 tell them not to.`,
      [h("label", { for: "dc-code" }, "Close code (4000–4999)", code), h("label", { for: "dc-reason" }, "Reason", reason)], "Disconnect");
    if (v) act("/v1/disconnect", { ...target, code: +v.code, ...(v.reason ? { reason: v.reason } : {}) }, `Disconnected ${what} with ${v.code}.`);
  }
  async function unsubscribe(session, t) {
    const v = await confirmDialog("Unsubscribe", `End the subscription of session ${session} to ${t}?`, [], "Unsubscribe");
    if (v) act("/v1/unsubscribe", { session, topic: t }, `Unsubscribed ${session} from ${t}.`);
  }
  async function revoke(user) {
    const v = await confirmDialog("Revoke", `Revoke every token of user ${user}? Their sessions close with 1008 and their tokens are refused until the revocation ends.`, [], "Revoke");
    if (v) act("/v1/revoke", { user }, `Revoked the tokens of ${user}.`);
  }
  load();
  return () => { live = false; };
}
