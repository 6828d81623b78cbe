//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// TestMain lets the test binary serve as a worker process: the
// coordinator re-executes os.Executable() with -worker.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == "-worker" && isWorkerEnv() {
		os.Exit(realMain([]string{"-worker"}, os.Stdout, os.Stderr))
	}
	code := m.Run()
	if brokerDir != "" {
		_ = os.RemoveAll(brokerDir)
	}
	os.Exit(code)
}

var (
	brokerOnce sync.Once
	brokerDir  string
	brokerBin  string
	brokerErr  error
)

// testBroker returns a broker binary for the end-to-end tests: the one
// LOADGEN_TEST_BROKER_BIN names, or ./cmd/broker built once per test
// binary. The build is bounded by the test binary's -timeout alone: with
// a cold build cache and the other packages' tests sharing the cores, it
// can take minutes. The runs have their own bound (-timeout).
func testBroker(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("LOADGEN_TEST_BROKER_BIN"); bin != "" {
		return bin
	}
	brokerOnce.Do(func() {
		brokerDir, brokerErr = os.MkdirTemp("", "loadgen-test-broker-")
		if brokerErr == nil {
			brokerBin, brokerErr = buildBroker(context.Background(), brokerDir)
		}
	})
	if brokerErr != nil {
		t.Fatal(brokerErr)
	}
	return brokerBin
}

// coordinateRun runs the coordinator with the command line args and
// returns the JSON result (the first line of stdout) and all of stdout; a
// usage error, a failed run or a first line that is not the result fails
// the test.
func coordinateRun(t *testing.T, args ...string) (jsonResult, string) {
	t.Helper()
	cfg, err := parseConfig(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := coordinate(cfg, &out, &errb); err != nil {
		t.Fatalf("coordinate: %v\nstderr: %s", err, errb.String())
	}
	line, _, _ := strings.Cut(out.String(), "\n")
	var res jsonResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("first stdout line is not the JSON result: %v\n%s", err, out.String())
	}
	return res, out.String()
}

// TestBroadcastEndToEnd builds the broker, runs a tiny broadcast ladder
// through real worker processes and checks the accounting: every
// expected delivery arrives, with no gap or duplicate.
func TestBroadcastEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the broker")
	}
	bin := testBroker(t)
	res, out := coordinateRun(t, "-scenario", "broadcast", "-broker-bin", bin, "-conns", "40", "-rates", "400,2000",
		"-duration", "1s", "-p99-limit", "10s", "-q", "-timeout", "90s", "-workers", "2", "-conns-per-ip", "15")
	steps := 0
	for _, r := range res.Rows {
		if !strings.HasPrefix(r.Group, "broadcast ladder") {
			continue
		}
		steps++
		m := r.Median
		if m["expected"] == 0 || m["received"] != m["expected"] || m["gaps"] != 0 || m["dups"] != 0 || m["closed_by_broker"] != 0 {
			t.Errorf("%s: expected %v received %v gaps %v dups %v closed %v", r.Label, m["expected"], m["received"], m["gaps"], m["dups"], m["closed_by_broker"])
		}
		if m["p50_ms"] <= 0 || m["p99_ms"] < m["p50_ms"] || m["broker_rss_mb"] <= 0 {
			t.Errorf("%s: p50 %v p99 %v rss %v", r.Label, m["p50_ms"], m["p99_ms"], m["broker_rss_mb"])
		}
	}
	if steps != 2 {
		t.Fatalf("%d ladder steps in the result, want 2:\n%s", steps, out)
	}
	if !strings.Contains(out, "== broadcast ladder, 40 subscribers") {
		t.Errorf("no human table on stdout:\n%s", out)
	}
}

// TestClusterEndToEnd runs the cluster scenario's cross-node phase alone,
// two nodes over a real redis-server, with single-message publishers on
// spread topics, and checks the accounting and the cost figures.
func TestClusterEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the broker and redis-server")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("no redis-server on PATH")
	}
	bin := testBroker(t)
	res, out := coordinateRun(t, "-scenario", "cluster", "-broker-bin", bin, "-conns", "30", "-topics", "20", "-subs-per-conn", "2",
		"-cluster-phases", "cross", "-batch", "1", "-publishers", "4", "-rates", "100,200", "-p99-limit", "10s",
		"-duration", "1s", "-q", "-timeout", "90s", "-workers", "1", "-conns-per-ip", "15")
	steps, summaries := 0, 0
	for _, r := range res.Rows {
		m := r.Median
		switch {
		case strings.HasPrefix(r.Group, clusterLadderGroup):
			steps++
			if m["expected"] == 0 || m["received"] != m["expected"] || m["gaps"] != 0 || m["dups"] != 0 || m["publish_errors"] != 0 || m["pass"] != 1 {
				t.Errorf("%s: %v", r.Label, m)
			}
			// One message per request: as many requests as messages.
			if m["publish_requests"] == 0 || m["publish_requests"] != m["expected"]/3 {
				t.Errorf("%s: %v requests for %v deliveries of 3 per message", r.Label, m["publish_requests"], m["expected"])
			}
			if m["cpu_us_per_message"] <= 0 || m["redis_calls_per_request"] < 1 {
				t.Errorf("%s: cpu/message %v, redis calls/request %v", r.Label, m["cpu_us_per_message"], m["redis_calls_per_request"])
			}
			if _, ok := m["redis_cpu_us_per_message"]; !ok {
				t.Errorf("%s: no redis_cpu_us_per_message", r.Label)
			}
		case strings.HasPrefix(r.Group, "cluster cross-node: highest"):
			summaries++
			if m["best_lossless_rate"] != 200 {
				t.Errorf("best_lossless_rate %v, want 200", m["best_lossless_rate"])
			}
		case r.Group == "cluster":
			t.Errorf("phase %q ran; only cross was asked for", r.Label)
		}
	}
	if steps != 2 || summaries != 1 {
		t.Fatalf("%d ladder steps and %d summaries, want 2 and 1:\n%s", steps, summaries, out)
	}
}
