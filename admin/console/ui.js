// Small helpers of the console's views: building elements, formatting
// figures and asking for confirmation.

/** h("tag.class", {attrs}, ...children): an element. */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A figure for display: 1234567 → "1.23 M", rates with one decimal. */
export function num(n, rate = false) {
  if (n === undefined || n === null || Number.isNaN(n)) return "–";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + " k";
  return rate ? n.toFixed(1) : String(Math.round(n));
}

/** A duration in seconds for display: "3 d 4 h", "5 m 2 s". */
export function duration(sec) {
  sec = Math.max(0, Math.floor(sec));
  const d = Math.floor(sec / 86400);
  const hh = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  if (d) return `${d} d ${hh} h`;
  if (hh) return `${hh} h ${m} m`;
  if (m) return `${m} m ${s} s`;
  return `${s} s`;
}

/** Shows msg for a few seconds; kind "error" or "ok". */
export function toast(msg, kind = "ok") {
  const t = document.getElementById("toast");
  t.replaceChildren(h("span." + kind, { text: msg }));
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.replaceChildren(), 6000);
}

/**
 * Opens a modal <dialog> titled title with fields (elements) and a
 * confirm button; resolves with the form's values on confirm, null on
 * cancel or Escape.
 */
export function confirmDialog(title, text, fields = [], confirmLabel = "Confirm") {
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog" },
      h("h2", { text: title }),
      h("p", { text }),
      ...fields,
      h("div.actions",
        {},
        h("button", { type: "button", value: "cancel", "data-action": "cancel", onclick: () => dlg.close("cancel") }, "Cancel"),
        h("button.primary.danger", { type: "submit", value: "confirm", "data-action": "confirm" }, confirmLabel)));
    const dlg = h("dialog", { "aria-label": title }, form);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!form.reportValidity()) return;
      dlg.close("confirm");
    });
    dlg.addEventListener("close", () => {
      const values = Object.fromEntries(new FormData(form));
      dlg.remove();
      resolve(dlg.returnValue === "confirm" ? values : null);
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Makes tr activate fn with Enter (and a click), as a row link. */
export function rowLink(tr, fn) {
  tr.tabIndex = 0;
  tr.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target === tr) fn();
  });
  tr.addEventListener("click", (e) => {
    if (!e.target.closest("a, button, input")) fn();
  });
  return tr;
}

/** A pager: Previous, "page N", Next (when more). */
export function pager(page, hasMore, go) {
  return h("div.pager", {},
    h("button", { type: "button", disabled: page === 0, onclick: () => go(page - 1), "data-action": "prev" }, "← Previous"),
    h("span.muted", { text: `page ${page + 1}` }),
    h("button", { type: "button", disabled: !hasMore, onclick: () => go(page + 1), "data-action": "next" }, "Next →"));
}
