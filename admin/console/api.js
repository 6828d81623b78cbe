// The server API as the console calls it: every request carries the
// credential the user entered (an admin API key or an admin JWT), kept
// in sessionStorage for the tab's life.

const KEY = "tidings.admin.credential";

/** The stored credential, or "" (loopback with no key configured). */
export function credential() {
  return sessionStorage.getItem(KEY) || "";
}

/** Keeps cred for this tab. */
export function setCredential(cred) {
  sessionStorage.setItem(KEY, cred);
}

/** Forgets the credential. */
export function clearCredential() {
  sessionStorage.removeItem(KEY);
}

/** Whether the credential is a JWT (three dot-separated parts). */
export function isJWT(cred = credential()) {
  return cred.split(".").length === 3;
}

/** An error the server API answered with. */
export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}, cred = credential()) {
  const h = { ...extra };
  if (cred) h.Authorization = "Bearer " + cred;
  return h;
}

async function answer(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: the status says it
  }
  if (!res.ok) {
    const e = body && body.error;
    throw new APIError(res.status, e ? e.code : "http_" + res.status, e ? e.message : res.statusText);
  }
  return body;
}

/** GET path with params (an object; empty values left out). */
export async function get(path, params = {}, cred) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const url = q.size ? path + "?" + q : path;
  return answer(await fetch(url, { headers: headers({}, cred), cache: "no-store" }));
}

/** POST body as JSON to path. */
export async function post(path, body) {
  const res = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", "X-Tidings-Console": "1" }),
    body: JSON.stringify(body),
  });
  return answer(res);
}

/**
 * Reads GET /v1/info/stream (Server-Sent Events, read with fetch so that
 * it can send the Authorization header) and calls onInfo with each
 * event's data; onState gets "live" or "down". It reconnects after a
 * failure, until stop() is called.
 */
export function followInfo(onInfo, onState) {
  let ctrl = null;
  let stopped = false;
  let timer = 0;
  async function run() {
    ctrl = new AbortController();
    try {
      const res = await fetch("/v1/info/stream", { headers: headers(), signal: ctrl.signal, cache: "no-store" });
      if (!res.ok || !res.body) throw new APIError(res.status, "feed", "the live feed answered " + res.status);
      onState("live");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (event === "info" && data) onInfo(JSON.parse(data));
        }
      }
    } catch (err) {
      if (stopped) return;
      console.warn("live feed:", err);
    }
    if (stopped) return;
    onState("down");
    timer = setTimeout(run, 2000);
  }
  run();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      if (ctrl) ctrl.abort();
    },
  };
}
