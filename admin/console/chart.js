// Hand-drawn SVG line charts of the nodes' figures, and the ring buffers
// that keep the last 15 minutes of them.

const SVG = "http://www.w3.org/2000/svg";

/** How many points a ring keeps: 15 minutes, one a second. */
export const POINTS = 900;

/** A fixed-size ring of {t, v} points. */
export class Ring {
  constructor(size = POINTS) {
    this.t = new Float64Array(size);
    this.v = new Float64Array(size);
    this.size = size;
    this.n = 0;
    this.head = 0;
  }
  push(t, v) {
    this.t[this.head] = t;
    this.v[this.head] = v;
    this.head = (this.head + 1) % this.size;
    this.n = Math.min(this.n + 1, this.size);
  }
  /** Calls fn(t, v) from the oldest point to the newest. */
  each(fn) {
    const start = (this.head - this.n + this.size) % this.size;
    for (let i = 0; i < this.n; i++) {
      const j = (start + i) % this.size;
      fn(this.t[j], this.v[j]);
    }
  }
  last() {
    return this.n ? this.v[(this.head - 1 + this.size) % this.size] : 0;
  }
}

function el(name, attrs = {}) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function nice(max) {
  if (max <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/**
 * Draws series (an array of {name, ring}) over the last span seconds (at
 * most 15 minutes) into svg (an <svg> element, replaced content), with a
 * y axis from 0 to a round maximum.
 */
export function draw(svg, series, span = POINTS, now = Date.now()) {
  const W = 480, H = 170, L = 40, B = 20, T = 10;
  const from = now - span * 1000;
  let max = 0;
  for (const s of series) s.ring.each((t, v) => { if (t >= from && v > max) max = v; });
  max = nice(max * 1.05);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const kids = [];
  for (const f of [0, 0.5, 1]) {
    const y = T + (H - B - T) * (1 - f);
    kids.push(el("line", { class: "axis", x1: L, x2: W, y1: y, y2: y }));
    const label = el("text", { x: L - 4, y: y + 4, "text-anchor": "end" });
    label.textContent = fmt(max * f);
    kids.push(label);
  }
  const ago = (f) => { const sec = Math.round(span * f); return sec >= 60 ? `-${+(sec / 60).toFixed(1)} min` : `-${sec} s`; };
  for (const [x, txt] of [[L, ago(1)], [L + (W - L) / 3, ago(2 / 3)], [L + (2 * (W - L)) / 3, ago(1 / 3)], [W - 2, "now"]]) {
    const t = el("text", { x, y: H - 4, "text-anchor": x === L ? "start" : x === W - 2 ? "end" : "middle" });
    t.textContent = txt;
    kids.push(t);
  }
  series.forEach((s, i) => {
    const pts = [];
    s.ring.each((t, v) => {
      if (t < from) return;
      const x = L + ((t - from) / (span * 1000)) * (W - L);
      const y = T + (H - B - T) * (1 - v / max);
      pts.push(x.toFixed(1) + "," + y.toFixed(1));
    });
    const line = el("polyline", { class: "s" + (i % 6), points: pts.join(" "), "data-series": s.name });
    kids.push(line);
    if (pts.length) {
      // The latest value, marked so that a series of one point shows.
      const [x, y] = pts[pts.length - 1].split(",");
      kids.push(el("circle", { class: "s" + (i % 6), cx: x, cy: y, r: 3 }));
    }
  });
  svg.replaceChildren(...kids);
}

function fmt(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return v % 1 ? v.toFixed(1) : String(v);
}

/** A new chart element: a titled panel with an svg and a legend. */
export function chartPanel(title, id) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title + ", last 15 minutes");
  const panel = document.createElement("section");
  panel.className = "panel chart";
  panel.id = id;
  const h = document.createElement("h2");
  h.textContent = title;
  const legend = document.createElement("div");
  legend.className = "legend";
  panel.append(h, svg, legend);
  return { panel, svg, legend };
}
