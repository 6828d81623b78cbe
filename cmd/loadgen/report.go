//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// metric is one named figure of a row.
type metric struct {
	Name  string
	Value float64
}

// row is one line of a result table.
type row struct {
	Group string
	Label string
	M     []metric
}

// combined is a row over several runs: each metric's values and median.
type combined struct {
	Group  string
	Label  string
	Names  []string
	Values map[string][]float64
}

func (c combined) median(name string) float64 { return median(c.Values[name]) }

// median returns the median of the values that are numbers (NaN if none).
func median(vs []float64) float64 {
	var xs []float64
	for _, v := range vs {
		if !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// combine merges the rows of several runs by group and label, in order of
// first appearance. A step that only some runs reached keeps the values
// of those runs.
func combine(runs [][]row) []combined {
	var out []combined
	idx := map[string]int{}
	for _, rows := range runs {
		for _, r := range rows {
			key := r.Group + "\x00" + r.Label
			i, ok := idx[key]
			if !ok {
				i = len(out)
				idx[key] = i
				out = append(out, combined{Group: r.Group, Label: r.Label, Values: map[string][]float64{}})
			}
			c := &out[i]
			for _, m := range r.M {
				if _, ok := c.Values[m.Name]; !ok {
					c.Names = append(c.Names, m.Name)
				}
				c.Values[m.Name] = append(c.Values[m.Name], m.Value)
			}
		}
	}
	return out
}

// ladder names one kind of rate ladder and its summary's figures.
type ladder struct {
	group      string // the steps' group prefix
	rateMetric string // the step's rate
	title      string // the summary's group, before the limit
	best       string // the summary's name of the best rate
	cpuMetric  string // the step's CPU figure, reported at the best step
}

var (
	broadcastLadder = ladder{group: "broadcast ladder", rateMetric: "target_deliveries_per_s",
		title: "broadcast: highest rate", best: "best_deliveries_per_s", cpuMetric: "broker_cpu_pct"}
	clusterLadder = ladder{group: clusterLadderGroup, rateMetric: "target_messages_per_s",
		title: "cluster cross-node: highest rate", best: "best_lossless_rate", cpuMetric: "cpu_us_per_message"}
)

// broadcastSummary adds, per subscriber count, the highest ladder step
// that passed over the runs: reached by most runs, median p99 under the
// limit, and no loss, gap, duplicate or cut session in any run.
func broadcastSummary(cs []combined, runs int, limitMS float64) []combined {
	return ladderSummary(cs, runs, limitMS, broadcastLadder)
}

// clusterSummary adds, per subscriber count of the cluster's cross-node
// ladder, the highest rate in messages/s whose step passed over the runs
// by the broadcast ladder's rule.
func clusterSummary(cs []combined, runs int, limitMS float64) []combined {
	return ladderSummary(cs, runs, limitMS, clusterLadder)
}

// ladderSummary adds, per subscriber count of the ladder l, the highest
// step that passed over the runs (ladderBest.take).
func ladderSummary(cs []combined, runs int, limitMS float64, l ladder) []combined {
	order, bySubs := ladderBySubscribers(cs, l.group)
	var out []combined
	for _, s := range order {
		b := ladderBest{rateMetric: l.rateMetric}
		for _, c := range bySubs[s] {
			b.take(c, runs, limitMS)
		}
		c := newSummary(fmt.Sprintf("%s with p99 < %g ms and zero loss", l.title, limitMS), fmt.Sprintf("%.0f subscribers", s))
		c.add("subscribers", s)
		c.add(l.best, b.rate)
		if b.rate > 0 {
			c.add("p99_ms_at_best", b.p99)
			c.add(l.cpuMetric+"_at_best", b.row.median(l.cpuMetric))
		}
		out = append(out, c)
	}
	return out
}

// newSummary is an empty summary row whose values add fills.
func newSummary(group, label string) combined {
	return combined{Group: group, Label: label, Values: map[string][]float64{}}
}

// add appends a single-valued metric to a summary row.
func (c *combined) add(name string, v float64) {
	c.Names = append(c.Names, name)
	c.Values[name] = []float64{v}
}

// ladderBySubscribers groups the ladder rows of cs whose group starts
// with prefix by their subscriber count, in the order the counts first
// appear.
func ladderBySubscribers(cs []combined, prefix string) (order []float64, by map[float64][]combined) {
	by = map[float64][]combined{}
	for _, c := range cs {
		if !strings.HasPrefix(c.Group, prefix) {
			continue
		}
		s := c.median("subscribers")
		if _, ok := by[s]; !ok {
			order = append(order, s)
		}
		by[s] = append(by[s], c)
	}
	return order, by
}

// ladderBest is the highest ladder step of a subscriber count that
// passed: its rate (the rateMetric of its row), p99 and row.
type ladderBest struct {
	rateMetric string
	rate, p99  float64
	row        combined
}

// take raises b to c's step when it passed over the runs.
func (b *ladderBest) take(c combined, runs int, limitMS float64) {
	for _, k := range []string{"missing", "gaps", "dups", "closed_by_broker", "publish_errors"} {
		for _, v := range c.Values[k] {
			if v != 0 {
				return
			}
		}
	}
	if pass, ok := c.Values["pass"]; ok && median(pass) < 1 {
		return // most runs missed the step's rate
	}
	reached := len(c.Values["p99_ms"])
	if 2*reached > runs && c.median("p99_ms") < limitMS {
		if rate := c.median(b.rateMetric); rate > b.rate {
			b.rate, b.p99, b.row = rate, c.median("p99_ms"), c
		}
	}
}

// targetCheck is one performance target with the figure reached.
type targetCheck struct {
	Target string  `json:"target"`
	Goal   string  `json:"goal"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Met    bool    `json:"met"`
	Note   string  `json:"note,omitempty"`
}

// evalTargets checks the performance targets against the median rows.
func evalTargets(scenario string, cs []combined) []targetCheck {
	var out []targetCheck
	switch scenario {
	case "idle":
		var big *combined
		for i := range cs {
			if cs[i].Group == "idle" && (big == nil || cs[i].median("connections") > big.median("connections")) {
				big = &cs[i]
			}
		}
		if big != nil {
			n := big.median("connections")
			v := big.median("kb_per_conn")
			t := targetCheck{Target: "idle memory per connection at 50 000", Goal: "<= 8 KB", Value: v, Unit: "KB", Met: v <= 8}
			if n < 50000 {
				t.Note = fmt.Sprintf("measured at %.0f connections, not 50 000", n)
			}
			out = append(out, t)
		}
	case "broadcast":
		var sum, tenth *combined
		for i := range cs {
			c := &cs[i]
			if strings.HasPrefix(c.Group, "broadcast: highest") && (sum == nil || c.median("subscribers") > sum.median("subscribers")) {
				sum = c
			}
		}
		if sum != nil {
			s := sum.median("subscribers")
			v := sum.median("best_deliveries_per_s")
			t := targetCheck{Target: "broadcast deliveries/s with p99 < 50 ms and zero loss", Goal: ">= 1 000 000", Value: v, Unit: "deliveries/s", Met: v >= 1e6}
			if s != 10000 {
				t.Note = fmt.Sprintf("measured with %.0f subscribers, not 10 000", s)
			}
			out = append(out, t)
			// 10 % of the target load: the 100k deliveries/s step.
			for i := range cs {
				c := &cs[i]
				if strings.HasPrefix(c.Group, "broadcast ladder") && c.median("subscribers") == s && c.median("target_deliveries_per_s") == 1e5 {
					tenth = c
				}
			}
			if tenth != nil {
				p := tenth.median("p99_ms")
				out = append(out, targetCheck{Target: "publish→deliver p99 at 10 % load (100 000 deliveries/s)", Goal: "< 5 ms", Value: p, Unit: "ms", Met: p < 5, Note: t.Note})
			}
		}
	case "cluster":
		for _, c := range cs {
			if strings.HasPrefix(c.Group, "cluster vs") {
				v := c.median("p99_ratio")
				out = append(out, targetCheck{Target: "cluster p99 latency / single-node p99 at the same rate", Goal: "<= 2", Value: v, Unit: "×", Met: v <= 2,
					Note: fmt.Sprintf("p50 ratio %.2f", c.median("p50_ratio"))})
			}
		}
	}
	return out
}

// fmtNum formats a figure for a table: whole numbers with thin groups,
// others with three significant digits.
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.IsInf(v, 0):
		return "inf"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return group(strconv.FormatInt(int64(v), 10))
	case math.Abs(v) >= 100:
		return group(strconv.FormatInt(int64(math.Round(v)), 10))
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

// group puts a space between groups of three digits.
func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// human writes a rate as 950, 12.5k or 1.2M.
func human(v float64) string {
	switch {
	case v >= 1e6:
		return strings.TrimSuffix(strconv.FormatFloat(v/1e6, 'f', 2, 64), "0") + "M"
	case v >= 1e3:
		return strings.TrimSuffix(strconv.FormatFloat(v/1e3, 'f', 1, 64), ".0") + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func ms(us float64) string {
	if us < 1000 {
		return strconv.FormatFloat(us/1000, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(us/1000, 'f', 1, 64) + "ms"
}

func mib(b int64) string { return strconv.FormatInt(b>>20, 10) + "MB" }

// writeTables prints one table per group; markdown gives GitHub tables.
func writeTables(w io.Writer, cs []combined, markdown bool) {
	var groups []string
	byGroup := map[string][]combined{}
	for _, c := range cs {
		if _, ok := byGroup[c.Group]; !ok {
			groups = append(groups, c.Group)
		}
		byGroup[c.Group] = append(byGroup[c.Group], c)
	}
	for _, g := range groups {
		rows := byGroup[g]
		var names []string
		seen := map[string]bool{}
		for _, r := range rows {
			for _, n := range r.Names {
				if !seen[n] {
					seen[n] = true
					names = append(names, n)
				}
			}
		}
		if markdown {
			fmt.Fprintf(w, "\n**%s**\n\n| case | %s |\n|---|%s\n", g, strings.Join(names, " | "), strings.Repeat("---:|", len(names)))
			for _, r := range rows {
				cells := make([]string, len(names))
				for i, n := range names {
					cells[i] = fmtNum(r.median(n))
				}
				fmt.Fprintf(w, "| %s | %s |\n", r.Label, strings.Join(cells, " | "))
			}
			continue
		}
		fmt.Fprintf(w, "\n== %s\n", g)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "case\t%s\t\n", strings.Join(names, "\t"))
		for _, r := range rows {
			cells := make([]string, len(names))
			for i, n := range names {
				cells[i] = fmtNum(r.median(n))
			}
			fmt.Fprintf(tw, "%s\t%s\t\n", r.Label, strings.Join(cells, "\t"))
		}
		_ = tw.Flush()
	}
}

func writeTargets(w io.Writer, ts []targetCheck) {
	if len(ts) == 0 {
		return
	}
	fmt.Fprintln(w, "\n== targets")
	for _, t := range ts {
		verdict := "MET"
		if !t.Met {
			verdict = "MISSED"
		}
		note := ""
		if t.Note != "" {
			note = " (" + t.Note + ")"
		}
		fmt.Fprintf(w, "%-6s %s: %s %s, goal %s%s\n", verdict, t.Target, fmtNum(t.Value), t.Unit, t.Goal, note)
	}
}

// jsonResult is the one JSON line on stdout.
type jsonResult struct {
	Scenario string         `json:"scenario"`
	Runs     int            `json:"runs"`
	Machine  map[string]any `json:"machine"`
	Rows     []jsonRow      `json:"rows"`
	Targets  []targetCheck  `json:"targets,omitempty"`
	Notes    []string       `json:"notes,omitempty"`
	Profiles []string       `json:"profiles,omitempty"`
	Error    string         `json:"error,omitempty"`
}

type jsonRow struct {
	Group   string               `json:"group"`
	Label   string               `json:"label"`
	Median  map[string]float64   `json:"median"`
	PerRun  map[string][]float64 `json:"per_run,omitempty"`
	Ordered []string             `json:"order"`
}

func jsonRows(cs []combined, runs int) []jsonRow {
	var out []jsonRow
	for _, c := range cs {
		jr := jsonRow{Group: c.Group, Label: c.Label, Median: map[string]float64{}, Ordered: c.Names}
		for _, n := range c.Names {
			v := c.median(n)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			jr.Median[n] = v
		}
		if runs > 1 {
			jr.PerRun = map[string][]float64{}
			for _, n := range c.Names {
				var vs []float64
				for _, v := range c.Values[n] {
					if !math.IsNaN(v) && !math.IsInf(v, 0) {
						vs = append(vs, v)
					}
				}
				jr.PerRun[n] = vs
			}
		}
		out = append(out, jr)
	}
	return out
}

func writeJSON(w io.Writer, res jsonResult) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
