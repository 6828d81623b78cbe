// The Tidings admin console: log-in, the live feed of the nodes' figures
// and the hash routes of its views (#/overview, #/topics, #/topic/NAME,
// #/sessions).

import { get, credential, setCredential, clearCredential, followInfo, APIError } from "./api.js";
import { h } from "./ui.js";
import { Ring } from "./chart.js";
import { overview } from "./overview.js";
import { topics } from "./topics.js";
import { topic } from "./topic.js";
import { sessions } from "./sessions.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOut = document.getElementById("sign-out");
const feedState = document.getElementById("feed-state");

/** The nodes' latest figures and their last 15 minutes, per node. */
const store = {
  nodes: [],
  span: 900, // the charts' window in seconds: 15 minutes unless chosen
  rings: new Map(), // node id → metric → Ring
  listeners: new Set(),
  ids() {
    return [...this.rings.keys()].sort();
  },
  ring(id, metric) {
    let m = this.rings.get(id);
    if (!m) this.rings.set(id, (m = new Map()));
    let r = m.get(metric);
    if (!r) m.set(metric, (r = new Ring()));
    return r;
  },
  add(info) {
    const now = Date.now();
    this.nodes = info.nodes || [];
    for (const n of this.nodes) {
      for (const k of ["published_per_second", "delivered_per_second", "sessions", "subscriptions", "topics"]) {
        this.ring(n.id, k).push(now, n[k] || 0);
      }
    }
    for (const fn of this.listeners) fn();
  },
  listen(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  },
};

let feed = null;
let cleanup = null;

const views = {
  overview: () => overview(main, store),
  topics: (params) => topics(main, params),
  topic: (params, name) => topic(main, name),
  sessions: (params) => sessions(main, params),
};

/** Parses location.hash: #/view/arg?query. */
function route() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const [view, ...rest] = path.split("/");
  return { view: views[view] ? view : "overview", arg: decodeURIComponent(rest.join("/")), params: new URLSearchParams(query) };
}

function show() {
  if (cleanup) cleanup();
  cleanup = null;
  const r = route();
  for (const a of nav.querySelectorAll("a")) {
    const current = a.dataset.view === r.view || (r.view === "topic" && a.dataset.view === "topics");
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `Tidings admin · ${r.view}${r.arg ? " " + r.arg : ""}`;
  main.dataset.view = r.view;
  cleanup = views[r.view](r.params, r.arg) || null;
}

function start() {
  nav.hidden = false;
  signOut.hidden = !credential();
  feedState.hidden = false;
  feed = followInfo((info) => store.add(info), (state) => {
    feedState.textContent = state === "live" ? "● live" : "○ reconnecting";
    feedState.className = "pill " + (state === "live" ? "live" : "down");
  });
  window.addEventListener("hashchange", show);
  show();
  main.focus();
}

function login(message) {
  nav.hidden = true;
  signOut.hidden = true;
  const input = h("input", { type: "password", name: "credential", id: "credential", required: true, autocomplete: "off",
    "aria-describedby": "login-help" });
  const err = h("p.error", { id: "login-error", role: "alert", text: message || "" });
  const form = h("form.panel.login", { id: "login" },
    h("h1", {}, "Sign in"),
    h("p.muted", { id: "login-help" },
      "Enter an admin API key (a key with \"admin\": true in the keys file) or a JWT with the admin scope. ",
      "It is kept in this tab only (sessionStorage)."),
    h("label", { for: "credential" }, "Admin key or JWT", input),
    err,
    h("p", {}, h("button.primary", { type: "submit" }, "Sign in")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const cred = input.value.trim();
    try {
      await get("/v1/info", {}, cred);
      setCredential(cred);
      start();
    } catch (ex) {
      err.textContent = ex instanceof APIError && ex.status === 403
        ? "This credential may not call the server API: " + ex.message
        : "Sign-in failed: " + ex.message;
      input.focus();
    }
  });
  main.replaceChildren(form);
  input.focus();
}

signOut.addEventListener("click", () => {
  clearCredential();
  if (feed) feed.stop();
  if (cleanup) cleanup();
  cleanup = null;
  window.removeEventListener("hashchange", show);
  feedState.hidden = true;
  login("Signed out.");
});

async function boot() {
  try {
    await get("/v1/info");
    start();
  } catch (ex) {
    login(credential() && ex instanceof APIError && ex.status !== 401 ? ex.message : "");
    if (credential()) clearCredential();
  }
}

boot();
