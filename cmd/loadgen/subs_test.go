//go:build linux

package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, topic string
		want           bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.*", "a", false},
		{"*.b", "a.b", true},
		{"a.>", "a.b", true},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{">", "a", true},
		{"prices.*.usd", "prices.i7.usd", true},
		{"prices.*.usd", "prices.i7.eur", false},
		{"a", "a.b", false},
		{"a.b.c", "a.b", false},
	}
	for _, tt := range tests {
		if got := match(tt.pattern, tt.topic); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.pattern, tt.topic, got, tt.want)
		}
	}
}

func TestSpreadGivesEachTopicTheSameSubscribers(t *testing.T) {
	t.Parallel()
	s := subSpec{Kind: "spread", Prefix: "t.", Topics: 1000, Per: 10}
	if got := s.patterns(3); len(got) != 10 || got[0] != "t.30" || got[9] != "t.39" {
		t.Fatalf("patterns(3) = %v", got)
	}
	for i, n := range s.deliveriesPerTopic(1000) {
		if n != 10 {
			t.Fatalf("topic %d has %d subscribers, want 10", i, n)
		}
	}
}

func TestWildcardSpec(t *testing.T) {
	t.Parallel()
	s := subSpec{Kind: "wildcard", Topics: 10000}
	if s.numTopics() != 10000 || s.topic(0) != "prices.i0.usd" || s.topic(10001) != "prices.i0.eur" {
		t.Fatalf("topics: %d %s %s", s.numTopics(), s.topic(0), s.topic(10001))
	}
	if p := s.patterns(0); p[0] != "prices.*.usd" {
		t.Fatalf("patterns(0) = %v", p)
	}
	if p := s.patterns(3); p[0] != "prices.i1.>" {
		t.Fatalf("patterns(3) = %v", p)
	}
	// 5000 sessions: 2500 on prices.*.<ccy> (250 per currency) and 2500 on
	// prices.i<k>.> (instruments 0..999, 2 or 3 sessions each).
	per := s.deliveriesPerTopic(5000)
	total := 0
	for _, n := range per {
		total += n
	}
	// Every currency pattern matches 1000 topics; every instrument pattern 10.
	if want := 2500*1000 + 2500*10; total != want {
		t.Fatalf("sum of deliveries per topic = %d, want %d", total, want)
	}
	if per[0] != 250+3 { // prices.i0.usd: 250 usd sessions, instrument 0 has sessions 1, 2001, 4001
		t.Fatalf("prices.i0.usd: %d deliveries", per[0])
	}
}

func TestExpected(t *testing.T) {
	t.Parallel()
	res := pubResult{perTopic: []uint64{3, 0, 5}}
	if got := expected(res, []int{10, 20, 2}); got != 40 {
		t.Fatalf("expected = %d, want 40", got)
	}
}

func TestSourceAddrs(t *testing.T) {
	t.Parallel()
	a := sourceAddrs(300)
	if a[0] != "127.0.0.2" || a[1] != "127.0.0.3" || a[253] != "127.0.0.255" || a[254] != "127.0.1.0" {
		t.Fatalf("addresses: %v %v %v %v", a[0], a[1], a[253], a[254])
	}
}

func TestProcParsers(t *testing.T) {
	t.Parallel()
	status := []byte("Name:\tbroker\nVmPeak:\t  9999 kB\nVmRSS:\t  123456 kB\nThreads:\t8\n")
	if v, err := parseVmRSS(status); err != nil || v != 123456*1024 {
		t.Fatalf("parseVmRSS = %d, %v", v, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tzombie\n")); err == nil {
		t.Fatalf("no VmRSS: no error")
	}
	// A command name with spaces and parentheses.
	stat := []byte("4242 (my (odd) broker) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0")
	if d, err := parseStatCPU(stat); err != nil || d != 3*time.Second {
		t.Fatalf("parseStatCPU = %s, %v", d, err)
	}
}

func TestParseSyscw(t *testing.T) {
	t.Parallel()
	io := []byte("rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 12345\nread_bytes: 0\n")
	if got := parseSyscw(io); got != 12345 {
		t.Fatalf("parseSyscw = %d", got)
	}
	if got := parseSyscw([]byte("rchar: 1\n")); got != 0 {
		t.Fatalf("parseSyscw without the line = %d", got)
	}
}

func TestCombineAndTargets(t *testing.T) {
	t.Parallel()
	run := func(kb float64, best float64, p99 float64) []row {
		return []row{
			{Group: "idle", Label: "50000 connections", M: []metric{{"connections", 50000}, {"kb_per_conn", kb}}},
			{Group: "broadcast ladder, 10000 subscribers", Label: "10000 subs, 100k/s", M: []metric{{"subscribers", 10000}, {"target_deliveries_per_s", 1e5}, {"deliveries_per_s", 1e5}, {"p99_ms", p99}}},
			{Group: "broadcast: highest rate", Label: "10000 subscribers", M: []metric{{"subscribers", 10000}, {"best_deliveries_per_s", best}}},
		}
	}
	cs := combine([][]row{run(9, 8e5, 3), run(7, 1.2e6, 6), run(7.5, 1e6, 4)})
	if len(cs) != 3 || cs[0].median("kb_per_conn") != 7.5 {
		t.Fatalf("combined: %+v", cs)
	}
	idle := evalTargets("idle", cs)
	if len(idle) != 1 || !idle[0].Met || idle[0].Value != 7.5 {
		t.Fatalf("idle targets: %+v", idle)
	}
	bc := evalTargets("broadcast", cs)
	if len(bc) != 2 || !bc[0].Met || bc[0].Value != 1e6 || !bc[1].Met || bc[1].Value != 4 {
		t.Fatalf("broadcast targets: %+v", bc)
	}
	var out bytes.Buffer
	writeTables(&out, cs, true)
	if !strings.Contains(out.String(), "| 50000 connections | 50 000 | 7.50 |") {
		t.Fatalf("markdown table:\n%s", out.String())
	}
	out.Reset()
	if err := writeSVG(&out, "t", broadcastSeries(cs)); err != nil || !strings.Contains(out.String(), "<polyline") {
		t.Fatalf("svg: %v\n%s", err, out.String())
	}
}

func TestFmtNum(t *testing.T) {
	t.Parallel()
	for v, want := range map[float64]string{1234567: "1 234 567", 0.1234: "0.123", 12.345: "12.3", 3.14159: "3.14", 999.7: "1 000", -1500: "-1 500"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
	if fmtNum(math.NaN()) != "-" {
		t.Errorf("NaN")
	}
}

func TestBroadcastSummary(t *testing.T) {
	t.Parallel()
	step := func(rate, p99, gaps float64) row {
		return row{Group: "broadcast ladder, 1000 subscribers", Label: human(rate), M: []metric{
			{"subscribers", 1000}, {"target_deliveries_per_s", rate}, {"p99_ms", p99}, {"gaps", gaps}, {"missing", 0}}}
	}
	runs := [][]row{
		{step(1e4, 5, 0), step(2e4, 40, 0), step(5e4, 45, 1), step(1e5, 60, 0)},
		{step(1e4, 6, 0), step(2e4, 45, 0), step(5e4, 30, 0), step(1e5, 70, 0)},
		{step(1e4, 4, 0), step(2e4, 60, 0)}, // a run that stopped early
	}
	sum := broadcastSummary(combine(runs), 3, 50)
	if len(sum) != 1 {
		t.Fatalf("%d summary rows", len(sum))
	}
	// 50k has a gap in one run; 100k has p99 over the limit; 20k's median p99 is 45.
	if got := sum[0].median("best_deliveries_per_s"); got != 2e4 {
		t.Fatalf("best = %v, want 20000", got)
	}
	if got := sum[0].median("p99_ms_at_best"); got != 45 {
		t.Fatalf("p99 at best = %v, want 45", got)
	}
}
