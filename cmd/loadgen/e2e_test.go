//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary serve as a worker process: the
// coordinator re-executes os.Executable() with -worker.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == "-worker" && isWorkerEnv() {
		os.Exit(realMain([]string{"-worker"}, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestBroadcastEndToEnd builds the broker, runs a tiny broadcast ladder
// through real worker processes and checks the accounting: every
// expected delivery arrives, with no gap or duplicate.
func TestBroadcastEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the broker")
	}
	// The build is bounded by the test binary's -timeout alone: with a
	// cold build cache and the other packages' tests sharing the cores,
	// it can take minutes. The run below has its own bound (-timeout).
	bin, err := buildBroker(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]string{"-scenario", "broadcast", "-broker-bin", bin, "-conns", "40", "-rates", "400,2000",
		"-duration", "1s", "-p99-limit", "10s", "-q", "-timeout", "90s", "-workers", "2", "-conns-per-ip", "15"}, io.Discard)
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
		t.Fatalf("%d ladder steps in the result, want 2:\n%s", steps, out.String())
	}
	if !strings.Contains(out.String(), "== broadcast ladder, 40 subscribers") {
		t.Errorf("no human table on stdout:\n%s", out.String())
	}
}
