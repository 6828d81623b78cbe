//go:build linux

package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// plotSeries is one line of a plot.
type plotSeries struct {
	Name   string       // the legend's text
	Color  string       // stroke colour
	Dash   string       // stroke-dasharray, "" for a solid line
	Points [][2]float64 // x, y: deliveries/s and latency in ms on the broadcast plot
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
	subs, bySubs := ladderBySubscribers(cs, "broadcast ladder")
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

// plotSpec is a line plot: its title, axis labels and scales, horizontal
// reference lines and series.
type plotSpec struct {
	Title          string       // the heading above the plot
	XLabel, YLabel string       // the axes' captions
	XLog, YLog     bool         // log10 scale instead of linear from 0
	XMin, YMin     float64      // log axes: the lowest value shown at least
	YMax           float64      // the highest value the y axis shows at least
	Refs           []refLine    // horizontal reference lines
	Series         []plotSeries // the lines, in legend order
}

// refLine is a dashed horizontal line at Y with a label.
type refLine struct {
	Y     float64 // where the line is, in y units
	Label string  // written above the line's right end
}

// writeSVG draws latency (log scale, ms) against deliveries per second,
// with the 50 ms and 5 ms target lines.
func writeSVG(w io.Writer, title string, series []plotSeries) error {
	return drawPlot(w, plotSpec{
		Title:  title,
		XLabel: "deliveries per second received (broker and loadgen on the same 2 cores)",
		YLabel: "publish → deliver latency, ms (log scale)",
		YLog:   true, YMin: 1, YMax: 100,
		Refs:   []refLine{{50, "50 ms (p99 limit)"}, {5, "5 ms (p99 at 10 % load)"}},
		Series: series,
	})
}

// axis maps values to [0, 1] on a linear or log10 scale.
type axis struct {
	log    bool
	lo, hi float64 // log10 of the bounds when log
	step   float64 // linear tick step
}

// newAxis spans lo..hi: whole decades on a log scale, else 0 to a round
// multiple of a 1-2-5 step.
func newAxis(lo, hi float64, log bool) axis {
	if log {
		a := axis{log: true, lo: math.Floor(math.Log10(lo)), hi: math.Ceil(math.Log10(hi))}
		if a.hi <= a.lo {
			a.hi = a.lo + 1
		}
		return a
	}
	if hi <= 0 {
		hi = 1
	}
	step := niceStep(hi / 6)
	return axis{lo: 0, hi: math.Ceil(hi/step) * step, step: step}
}

// frac is where v falls on the axis, 0 at the low end and 1 at the high.
func (a axis) frac(v float64) float64 {
	if a.log {
		return (math.Log10(v) - a.lo) / (a.hi - a.lo)
	}
	return (v - a.lo) / (a.hi - a.lo)
}

// in reports whether v is within the axis.
func (a axis) in(v float64) bool { f := a.frac(v); return f >= -1e-9 && f <= 1+1e-9 }

// ticks are the grid values: 1, 2 and 5 per decade, or the linear steps.
func (a axis) ticks() []float64 {
	var out []float64
	if a.log {
		for e := a.lo; e <= a.hi; e++ {
			for _, m := range []float64{1, 2, 5} {
				if v := m * math.Pow(10, e); a.in(v) {
					out = append(out, v)
				}
			}
		}
		return out
	}
	for v := a.lo; v <= a.hi+a.step/2; v += a.step {
		out = append(out, v)
	}
	return out
}

// drawPlot writes p as an SVG document.
func drawPlot(w io.Writer, p plotSpec) error {
	const (
		W, H                   = 860, 520
		left, right, top, bott = 70, 250, 40, 60
	)
	pw, ph := float64(W-left-right), float64(H-top-bott)
	xmin, xmax, ymin, ymax := math.Inf(1), 0.0, p.YMin, p.YMax
	if p.XMin > 0 {
		xmin = p.XMin
	}
	for _, s := range p.Series {
		for _, pt := range s.Points {
			xmin, xmax = math.Min(xmin, pt[0]), math.Max(xmax, pt[0])
			ymin, ymax = math.Min(ymin, pt[1]), math.Max(ymax, pt[1])
		}
	}
	if math.IsInf(xmin, 1) || xmin <= 0 {
		xmin = 1
	}
	if ymin <= 0 {
		ymin = 0.01
	}
	ax, ay := newAxis(xmin, xmax, p.XLog), newAxis(ymin, ymax, p.YLog)
	x := func(v float64) float64 { return float64(left) + ax.frac(v)*pw }
	y := func(v float64) float64 { return float64(top) + ph - ay.frac(v)*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc(p.Title))
	// Grid and axes.
	for _, v := range ay.ticks() {
		yy := y(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, float64(left)+pw, yy, yy)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, yy+4, trimFloat(v))
	}
	for _, v := range ax.ticks() {
		xx := x(v)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#eee"/>`+"\n", xx, xx, top, float64(top)+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xx, float64(top)+ph+18, human(v))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", float64(left)+pw/2, H-15, esc(p.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", float64(top)+ph/2, esc(p.YLabel))
	for _, lim := range p.Refs {
		if ay.in(lim.Y) {
			yy := y(lim.Y)
			fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="4 3"/>`+"\n", left, float64(left)+pw, yy, yy)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#c00" text-anchor="end">%s</text>`+"\n", float64(left)+pw-4, yy-4, esc(lim.Label))
		}
	}
	// Lines, points and legend.
	for i, s := range p.Series {
		var pts []string
		for _, pt := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(pt[0]), y(pt[1])))
		}
		dash := ""
		if s.Dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.Dash)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", s.Color, dash, strings.Join(pts, " "))
		for _, pt := range s.Points {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(pt[0]), y(pt[1]), s.Color)
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

// sweepSeries turns the cluster batch sweep rows into plot lines: the CPU
// per message of brokers and Redis together, and of Redis alone, against
// the messages per publish request.
func sweepSeries(cs []combined) []plotSeries {
	lines := []plotSeries{
		{Name: "brokers + Redis", Color: "#d95f02"},
		{Name: "Redis alone", Color: "#1b9e77", Dash: "6 4"},
	}
	for i, m := range []string{"cpu_us_per_message", "redis_cpu_us_per_message"} {
		for _, c := range cs {
			if !strings.HasPrefix(c.Group, clusterSweepGroup) {
				continue
			}
			x, y := c.median("batch"), c.median(m)
			if !math.IsNaN(x) && !math.IsNaN(y) && x > 0 {
				lines[i].Points = append(lines[i].Points, [2]float64{x, y})
			}
		}
		sort.Slice(lines[i].Points, func(a, b int) bool { return lines[i].Points[a][0] < lines[i].Points[b][0] })
	}
	var out []plotSeries
	for _, l := range lines {
		if len(l.Points) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// writeSweepSVG draws the CPU cost per message (µs) against the batch
// size (log scale) of the cluster batch sweep.
func writeSweepSVG(w io.Writer, title string, series []plotSeries) error {
	return drawPlot(w, plotSpec{
		Title:  title,
		XLabel: "messages per publish request (log scale)",
		YLabel: "CPU per message published, µs",
		XLog:   true, XMin: 1,
		Series: series,
	})
}
