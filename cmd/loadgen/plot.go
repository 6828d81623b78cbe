//go:build linux

package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// plotSeries is one line of the latency plot.
type plotSeries struct {
	Name   string
	Color  string
	Dash   string
	Points [][2]float64 // x: deliveries/s, y: latency in ms
}

// broadcastSeries turns the broadcast ladder rows into plot lines: p50,
// p90, p99 and p99.9 per subscriber count, leaving out the steps whose
// publisher could not keep its rate.
func broadcastSeries(cs []combined) []plotSeries {
	pcts := []struct{ metric, name, color string }{
		{"p50_ms", "p50", "#1b9e77"}, {"p90_ms", "p90", "#7570b3"},
		{"p99_ms", "p99", "#d95f02"}, {"p99.9_ms", "p99.9", "#e7298a"},
	}
	dashes := []string{"", "6 4", "2 3", "10 3 2 3"}
	subs, bySubs := ladderBySubscribers(cs)
	sort.Float64s(subs)
	var out []plotSeries
	for si, s := range subs {
		for _, p := range pcts {
			ps := plotSeries{Name: fmt.Sprintf("%s, %s subscribers", p.name, group(fmt.Sprint(int(s)))), Color: p.color, Dash: dashes[si%len(dashes)]}
			for _, c := range bySubs[s] {
				// A step whose publisher fell behind its rate is overload,
				// not a point on the curve.
				if c.median("publish_rate") < 0.95*c.median("publish_rate_target") {
					continue
				}
				x, y := c.median("deliveries_per_s"), c.median(p.metric)
				if !math.IsNaN(x) && !math.IsNaN(y) {
					ps.Points = append(ps.Points, [2]float64{x, math.Max(y, 0.01)})
				}
			}
			sort.Slice(ps.Points, func(i, j int) bool { return ps.Points[i][0] < ps.Points[j][0] })
			if len(ps.Points) > 0 {
				out = append(out, ps)
			}
		}
	}
	return out
}

// writeSVG draws latency (log scale, ms) against deliveries per second,
// with the 50 ms and 5 ms target lines.
func writeSVG(w io.Writer, title string, series []plotSeries) error {
	const (
		W, H                   = 860, 520
		left, right, top, bott = 70, 250, 40, 60
	)
	pw, ph := float64(W-left-right), float64(H-top-bott)
	xmax, ymin, ymax := 0.0, 1.0, 100.0
	for _, s := range series {
		for _, p := range s.Points {
			xmax = math.Max(xmax, p[0])
			ymin = math.Min(ymin, p[1])
			ymax = math.Max(ymax, p[1])
		}
	}
	if xmax == 0 {
		xmax = 1
	}
	xstep := niceStep(xmax / 6)
	xmax = math.Ceil(xmax/xstep) * xstep
	lo, hi := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
	x := func(v float64) float64 { return float64(left) + v/xmax*pw }
	y := func(v float64) float64 { return float64(top) + ph - (math.Log10(v)-lo)/(hi-lo)*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc(title))
	// Grid and axes.
	for e := lo; e <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < math.Pow(10, lo) || v > math.Pow(10, hi) {
				continue
			}
			yy := y(v)
			fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, float64(left)+pw, yy, yy)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, yy+4, trimFloat(v))
		}
	}
	for v := 0.0; v <= xmax+xstep/2; v += xstep {
		xx := x(v)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#eee"/>`+"\n", xx, xx, top, float64(top)+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xx, float64(top)+ph+18, human(v))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">deliveries per second received (broker and loadgen on the same 2 cores)</text>`+"\n", float64(left)+pw/2, H-15)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">publish → deliver latency, ms (log scale)</text>`+"\n", float64(top)+ph/2)
	for _, lim := range []struct {
		v     float64
		label string
	}{{50, "50 ms (p99 limit)"}, {5, "5 ms (p99 at 10 % load)"}} {
		if lim.v >= math.Pow(10, lo) && lim.v <= math.Pow(10, hi) {
			yy := y(lim.v)
			fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="4 3"/>`+"\n", left, float64(left)+pw, yy, yy)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#c00" text-anchor="end">%s</text>`+"\n", float64(left)+pw-4, yy-4, lim.label)
		}
	}
	// Lines, points and legend.
	for i, s := range series {
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p[0]), y(p[1])))
		}
		dash := ""
		if s.Dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.Dash)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", s.Color, dash, strings.Join(pts, " "))
		for _, p := range s.Points {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(p[0]), y(p[1]), s.Color)
		}
		ly := float64(top) + 10 + float64(i)*18
		lx := float64(W-right) + 15
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", lx, lx+28, ly, ly, s.Color, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+34, ly+4, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceStep rounds a raw axis step to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%g", v)
	return s
}

func esc(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}
