//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestClusterFlags(t *testing.T) {
	t.Parallel()
	c, err := parseConfig([]string{"-scenario", "cluster"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.batch != 0 || c.publishers != 8 || !reflect.DeepEqual(c.clusterPhases, clusterPhaseNames) || c.redisCluster || c.batches != nil {
		t.Fatalf("defaults: batch %d publishers %d phases %v redis cluster %v batches %v", c.batch, c.publishers, c.clusterPhases, c.redisCluster, c.batches)
	}
	if s := c.clusterSpec(); s.Kind != "one" || s.Topic != "bench.cluster" {
		t.Fatalf("default spec %+v", s)
	}
	c, err = parseConfig([]string{"-scenario", "cluster", "-batch", "1", "-publishers", "32", "-cluster-phases", " cross,memory",
		"-conns", "1000", "-topics", "5000", "-subs-per-conn", "5", "-redis-cluster"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.batch != 1 || c.publishers != 32 || !reflect.DeepEqual(c.clusterPhases, []string{"memory", "cross"}) || !c.redisCluster {
		t.Fatalf("batch %d publishers %d phases %v redis cluster %v", c.batch, c.publishers, c.clusterPhases, c.redisCluster)
	}
	if !c.hasPhase("cross") || c.hasPhase("redis") {
		t.Fatalf("hasPhase")
	}
	s := c.clusterSpec()
	if s.Kind != "spread" || s.Prefix != "bench.cluster." || s.Topics != 5000 || s.Per != 5 {
		t.Fatalf("spread spec %+v", s)
	}
	// 1000 connections × 5 subscriptions cover the 5000 topics once each.
	for i, n := range s.deliveriesPerTopic(1000) {
		if n != 1 {
			t.Fatalf("topic %d has %d subscribers, want 1", i, n)
		}
	}
	c, err = parseConfig([]string{"-scenario", "cluster", "-topics", "20"}, io.Discard)
	if err != nil || c.perConn != 1 || c.clusterSpec().Per != 1 {
		t.Fatalf("-topics alone: per %d, %v", c.perConn, err)
	}
	c, err = parseConfig([]string{"-scenario", "cluster", "-cluster-phases", "cross", "-batches", "1, 10,50,100", "-svg", "x.svg"}, io.Discard)
	if err != nil || !reflect.DeepEqual(c.batches, []int{1, 10, 50, 100}) {
		t.Fatalf("batches %v, %v", c.batches, err)
	}
	c, err = parseConfig([]string{"-scenario", "cluster", "-rates", "1k,5k,20k"}, io.Discard)
	if err != nil || !reflect.DeepEqual(c.rates, []float64{1e3, 5e3, 2e4}) {
		t.Fatalf("cluster ladder rates %v, %v", c.rates, err)
	}
	c, err = parseConfig([]string{"-scenario", "fanout-many", "-batch", "50", "-publishers", "2"}, io.Discard)
	if err != nil || c.pubOpts() != (pubOptions{batch: 50, inFlight: 2}) {
		t.Fatalf("fanout-many publisher options %+v, %v", c.pubOpts(), err)
	}
}

func TestBadClusterFlags(t *testing.T) {
	t.Parallel()
	expectUsageErrors(t, []badFlags{
		{[]string{"-scenario", "cluster", "-batch", "-1"}, "invalid value for -batch: -1: must not be negative"},
		{[]string{"-scenario", "cluster", "-batch", "1001"}, "invalid value for -batch: 1001: the broker takes at most 1000"},
		{[]string{"-scenario", "cluster", "-batch", "ten"}, `invalid value "ten" for flag -batch`},
		{[]string{"-scenario", "cluster", "-publishers", "0"}, "invalid value for -publishers: 0: between 1 and 1024"},
		{[]string{"-scenario", "fanout-many", "-publishers", "-3"}, "invalid value for -publishers"},
		{[]string{"-scenario", "cluster", "-cluster-phases", "cross,disk"}, `invalid value for -cluster-phases: "disk": want a comma-separated list of memory, redis, cross`},
		{[]string{"-scenario", "cluster", "-cluster-phases", "cross,"}, `invalid value for -cluster-phases: ""`},
		{[]string{"-scenario", "cluster", "-cluster-phases", "redis,redis"}, `"redis" is listed twice`},
		{[]string{"-scenario", "cluster", "-batches", "1,,10"}, `invalid value for -batches: ""`},
		{[]string{"-scenario", "cluster", "-batches", "1,x"}, `invalid value for -batches: "x"`},
		{[]string{"-scenario", "cluster", "-batches", "0,10"}, `invalid value for -batches: "0"`},
		{[]string{"-scenario", "cluster", "-batches", "10,2000"}, "invalid value for -batches: 2000"},
		{[]string{"-scenario", "cluster", "-batches", "1,10", "-rates", "1k,2k"}, "not both"},
		{[]string{"-scenario", "cluster", "-batches", "1,10", "-cluster-phases", "memory"}, "add cross to -cluster-phases"},
		{[]string{"-scenario", "cluster", "-rates", "1k,2k", "-cluster-phases", "redis"}, "add cross to -cluster-phases"},
		{[]string{"-scenario", "cluster", "-rates", "2k,1k"}, "rates must increase"},
		{[]string{"-scenario", "cluster", "-redis-cluster", "-cluster-phases", "memory"}, "only the redis and cross phases use Redis"},
		{[]string{"-scenario", "broadcast", "-cluster-phases", "cross"}, "invalid value for -cluster-phases: only the cluster scenario"},
		{[]string{"-scenario", "fanout-many", "-batches", "1,10"}, "invalid value for -batches: only the cluster scenario"},
		{[]string{"-scenario", "churn", "-redis-cluster"}, "invalid value for -redis-cluster: only the cluster scenario"},
		{[]string{"-scenario", "cluster", "-topics", "10", "-subs-per-conn", "20"}, "-subs-per-conn between 1 and -topics"},
		{[]string{"-scenario", "cluster", "-subs-per-conn", "5"}, "only over -topics above 1"},
		{[]string{"-scenario", "cluster", "-svg", "x.svg"}, "plot is of the broadcast scenario, or of the cluster scenario's -batches sweep"},
	})
}

func TestClusterHelp(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	_, _ = parseConfig([]string{"-h"}, &b)
	for _, want := range []string{"-batch int", "-publishers int", "-cluster-phases", "-batches", "-redis-cluster", "memory, redis, cross"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// commandstats is INFO commandstats as redis-server 7 answers it.
const commandstats = "# Commandstats\r\n" +
	"cmdstat_client|setname:calls=1,usec=4,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_eval:calls=3,usec=47,usec_per_call=15.67,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_spublish:calls=5,usec=3,usec_per_call=0.60,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_script|load:calls=1,usec=28,usec_per_call=28.00,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_publish:calls=1200,usec=4000,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_evalsha:calls=600,usec=21000,usec_per_call=35.00,rejected_calls=0,failed_calls=2\r\n" +
	"cmdstat_evalsha_ro:calls=7,usec=21,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_info:calls=9,usec=300,usec_per_call=33.33,rejected_calls=0,failed_calls=0\r\n"

func TestParseCommandCalls(t *testing.T) {
	t.Parallel()
	tests := []struct {
		info string
		cmds []string
		want uint64
		err  string
	}{
		{commandstats, publishCommands, 3 + 5 + 1200 + 600, ""},
		{commandstats, []string{"EVALSHA"}, 600, ""},
		{commandstats, []string{"info"}, 9, ""},
		{"# Commandstats\r\n", publishCommands, 0, ""},
		{"", publishCommands, 0, ""},
		{"cmdstat_publish:usec=3,usec_per_call=3.00\r\n", publishCommands, 0, "has no calls"},
		{"cmdstat_evalsha:calls=x,usec=3\r\n", publishCommands, 0, "bad calls"},
	}
	for i, tt := range tests {
		got, err := parseCommandCalls(tt.info, tt.cmds)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%d: error %v, want %q", i, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%d: %d, %v; want %d", i, got, err, tt.want)
		}
	}
}

func TestReadReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want, err string
	}{
		{"$" + itoa(len(commandstats)) + "\r\n" + commandstats + "\r\n", commandstats, ""},
		{"+OK\r\n", "OK", ""},
		{":42\r\n", "42", ""},
		{"$-1\r\n", "", ""},
		{"-ERR unknown command\r\n", "", "redis: ERR unknown command"},
		{"*2\r\n$1\r\na\r\n", "", "unexpected reply"},
		{"$10\r\nshort\r\n", "", "EOF"},
		{"$x\r\n", "", "bad bulk length"},
	}
	for _, tt := range tests {
		got, err := readReply(bufio.NewReader(strings.NewReader(tt.in)))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%.20q: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%.20q: %.30q, %v", tt.in, got, err)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestPublishCalls runs publishCalls against a fake server that checks
// the request is INFO commandstats in RESP and answers a bulk string.
func TestPublishCalls(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				want := "*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n"
				buf := make([]byte, len(want))
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
					_, _ = io.WriteString(c, "-ERR bad request\r\n")
					return
				}
				_, _ = io.WriteString(c, "$"+itoa(len(commandstats))+"\r\n"+commandstats+"\r\n")
			}()
		}
	}()
	addr := ln.Addr().String()
	n, err := publishCalls([]string{addr, addr})
	if err != nil || n != 2*1808 {
		t.Fatalf("publishCalls = %d, %v; want %d", n, err, 2*1808)
	}
}

func TestClusterSummary(t *testing.T) {
	t.Parallel()
	step := func(rate, p99, missing, cpu float64) row {
		return row{Group: clusterLadderGroup + ", 1000 subscribers", Label: human(rate) + " msgs/s", M: []metric{
			{"subscribers", 1000}, {"target_messages_per_s", rate}, {"p99_ms", p99}, {"missing", missing}, {"gaps", 0}, {"cpu_us_per_message", cpu}}}
	}
	runs := [][]row{
		{step(1e3, 3, 0, 90), step(5e3, 20, 0, 60), step(2e4, 30, 5, 50)},
		{step(1e3, 4, 0, 100), step(5e3, 40, 0, 70), step(2e4, 20, 0, 40)},
		{step(1e3, 5, 0, 110), step(5e3, 45, 0, 80)},
		// A broadcast ladder row is not the cluster's.
		{{Group: "broadcast ladder, 1000 subscribers", Label: "x", M: []metric{{"subscribers", 1000}, {"target_deliveries_per_s", 1e6}, {"p99_ms", 1}}}},
	}
	sum := clusterSummary(combine(runs), 3, 50)
	if len(sum) != 1 || sum[0].Label != "1000 subscribers" {
		t.Fatalf("summary rows %+v", sum)
	}
	// 20k lost messages in one run: 5k is the best, median p99 40.
	for name, want := range map[string]float64{"best_lossless_rate": 5e3, "p99_ms_at_best": 40, "cpu_us_per_message_at_best": 70, "subscribers": 1000} {
		if got := sum[0].median(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if !strings.Contains(sum[0].Group, "p99 < 50 ms") {
		t.Errorf("group %q", sum[0].Group)
	}
	// A step whose publisher fell short of its rate in most runs (pass
	// 0) is no best, however low its latency.
	short := step(4e4, 10, 0, 30)
	short.M = append(short.M, metric{"pass", 0})
	okStep := step(1e4, 10, 0, 40)
	okStep.M = append(okStep.M, metric{"pass", 1})
	if got := clusterSummary(combine([][]row{{okStep, short}}), 1, 50); got[0].median("best_lossless_rate") != 1e4 {
		t.Errorf("best rate %v with the 40k step short of its rate, want 10k", got[0].median("best_lossless_rate"))
	}
	// A ladder whose first step failed has no best.
	none := clusterSummary(combine([][]row{{step(1e3, 80, 0, 90)}}), 1, 50)
	if len(none) != 1 || none[0].median("best_lossless_rate") != 0 || len(none[0].Names) != 2 {
		t.Fatalf("failed ladder summary %+v", none)
	}
}

func TestSweepPlot(t *testing.T) {
	t.Parallel()
	var rows []row
	for _, b := range []float64{100, 1, 10, 50} {
		rows = append(rows, row{Group: clusterSweepGroup + ", 1000 subscribers, 2k msgs/s", Label: "batch", M: []metric{
			{"batch", b}, {"cpu_us_per_message", 400 / b}, {"redis_cpu_us_per_message", 100 / b}}})
		rows[len(rows)-1].Label += " " + human(b)
	}
	cs := combine([][]row{rows})
	series := sweepSeries(cs)
	if len(series) != 2 || len(series[0].Points) != 4 || series[0].Points[0] != [2]float64{1, 400} || series[1].Points[3] != [2]float64{100, 1} {
		t.Fatalf("series %+v", series)
	}
	var out strings.Builder
	if err := writeSweepSVG(&out, "sweep <test>", series); err != nil {
		t.Fatal(err)
	}
	svg := out.String()
	// Well-formed XML from the root to the end.
	d := xml.NewDecoder(strings.NewReader(svg))
	circles, polylines := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not valid XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "circle":
				circles++
			case "polyline":
				polylines++
			}
		}
	}
	if circles != 8 || polylines != 2 {
		t.Fatalf("%d points and %d lines, want 8 and 2", circles, polylines)
	}
	for _, want := range []string{"sweep &lt;test&gt;", "messages per publish request (log scale)", "CPU per message published, µs", "brokers + Redis", "Redis alone", ">100<", ">10<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %q", want)
		}
	}
	// The broadcast plot still comes from broadcast rows only.
	if len(broadcastSeries(cs)) != 0 {
		t.Errorf("sweep rows made broadcast series")
	}
}

func TestPublisherBody(t *testing.T) {
	t.Parallel()
	spec := subSpec{Kind: "spread", Prefix: "bench.cluster.", Topics: 3, Per: 1}
	p := newPublisher("http://x", spec, 64, pubOptions{batch: 1, inFlight: 4})
	path, b := p.body([]int{2}, 7)
	var one struct {
		Topic string          `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &one); err != nil || path != "/v1/publish" || one.Topic != "bench.cluster.2" || len(one.Data) == 0 {
		t.Fatalf("single: %s %s (%v)", path, b, err)
	}
	p = newPublisher("http://x", spec, 64, pubOptions{batch: 2})
	path, b = p.body([]int{0, 1}, 7)
	var batch struct {
		Messages []struct {
			Topic string `json:"topic"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(b, &batch); err != nil || path != "/v1/publish/batch" || len(batch.Messages) != 2 || batch.Messages[1].Topic != "bench.cluster.1" {
		t.Fatalf("batch: %s %s (%v)", path, b, err)
	}
	if p.inFlight != defaultPublishers {
		t.Fatalf("default in flight %d", p.inFlight)
	}
}

// TestPublisherRun publishes to a test server: with -batch N every
// request carries N messages, at most -publishers are in flight, and the
// rate holds.
func TestPublisherRun(t *testing.T) {
	t.Parallel()
	for _, o := range []pubOptions{{batch: 1, inFlight: 4}, {batch: 5, inFlight: 2}, {batch: 0, inFlight: 3}} {
		var mu sync.Mutex
		sizes := map[string]int{}
		var cur, peak atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := cur.Add(1)
			defer cur.Add(-1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
			b, _ := io.ReadAll(r.Body)
			k := 1
			if r.URL.Path == "/v1/publish/batch" {
				var m struct{ Messages []json.RawMessage }
				_ = json.Unmarshal(b, &m)
				k = len(m.Messages)
			}
			mu.Lock()
			sizes[r.URL.Path+" "+itoa(k)]++
			mu.Unlock()
			_, _ = io.WriteString(w, "{}")
		}))
		p := newPublisher(srv.URL, subSpec{Kind: "one", Topic: "t"}, 64, o)
		res := p.run(context.Background(), 200, 500*time.Millisecond, 10*time.Millisecond)
		p.close()
		srv.Close()
		if res.failed != 0 || res.sent < 80 || res.sent > 110 {
			t.Errorf("%+v: sent %d failed %d (%s)", o, res.sent, res.failed, res.lastErr)
		}
		if got := peak.Load(); got > int64(o.inFlight) {
			t.Errorf("%+v: %d requests in flight", o, got)
		}
		total := 0
		for _, n := range sizes {
			total += n
		}
		if uint64(total) != res.requests {
			t.Errorf("%+v: server saw %d requests, publisher counted %d", o, total, res.requests)
		}
		switch o.batch {
		case 1:
			if len(sizes) != 1 || sizes["/v1/publish 1"] == 0 {
				t.Errorf("batch 1: %v", sizes)
			}
		case 5:
			if len(sizes) != 1 || sizes["/v1/publish/batch 5"] == 0 {
				t.Errorf("batch 5: %v", sizes)
			}
		}
	}
}
