//go:build linux

// Command loadgen is Tidings' load generator. It starts the broker (or
// targets a running one at -url), opens up to tens of thousands of
// WebSocket sessions from worker processes bound to loopback source
// addresses 127.0.0.2, 127.0.0.3, …, publishes over HTTP (batches, or
// single messages with -batch 1, from -publishers concurrent requests), and
// measures the broker's RSS and CPU from /proc, the deliveries per second
// received, publish→deliver latency percentiles and loss (offset gaps and
// duplicates per topic).
//
//	go run ./cmd/loadgen -scenario broadcast -conns 10000 -runs 3
//
// The cluster scenario measures two nodes over Redis against one; it can
// run its cross-node phase as a rate ladder (-rates) or a sweep of publish
// batch sizes (-batches), and reports the CPU and Redis calls per message.
//
//	go run ./cmd/loadgen -scenario cluster -cluster-phases cross -rates 1k,5k,20k
//
// Scenarios: idle, broadcast, fanout-many, wildcard, churn, cluster; see
// docs/BENCHMARKS.md. Progress goes to stderr; the results go to stdout as
// one JSON line followed by the tables. Every run targets loopback only
// and stops on its own (-timeout).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "-worker" {
		if !isWorkerEnv() {
			fmt.Fprintln(stderr, "loadgen: -worker is internal: the coordinator starts workers itself")
			return 2
		}
		if err := runWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(stderr, "loadgen worker: %v\n", err)
			return 1
		}
		return 0
	}
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	if cfg.replot != "" {
		if err := replot(cfg.replot, cfg.svg); err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
		return 0
	}
	if err := coordinate(cfg, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// coordinate runs the scenario cfg.runs times and reports the medians.
func coordinate(cfg config, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	ctx, stopSig := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stopSig()

	tmp, err := os.MkdirTemp("", "tidings-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	res := jsonResult{Scenario: cfg.scenario, Runs: cfg.runs, Machine: map[string]any{
		"cpus": runtime.NumCPU(), "go": runtime.Version(), "loadavg_start": loadavg(),
		"open_file_limit": hardFileLimit(),
	}}
	var bin string
	var have map[string]bool
	if cfg.url == "" {
		bin = cfg.brokerBin
		if bin == "" {
			fmt.Fprintln(stderr, "loadgen: building ./cmd/broker")
			if bin, err = buildBroker(ctx, tmp); err != nil {
				return err
			}
		}
		if have, err = brokerFlags(ctx, bin); err != nil {
			return err
		}
		res.Machine["broker_bin"] = bin
	}
	var runs [][]row
	var runErr error
	for i := 1; i <= cfg.runs; i++ {
		r := &runner{cfg: cfg, tmp: tmp, bin: bin, have: have, stderr: stderr, run: i}
		pctx, stopProgress := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); r.progressLoop(pctx) }()
		start := time.Now()
		rows, notes, err := r.runScenario(ctx)
		stopProgress()
		<-done
		if !cfg.quiet {
			fmt.Fprintf(stderr, "loadgen: %s run %d/%d done in %s (load average %s)\n", cfg.scenario, i, cfg.runs, time.Since(start).Round(time.Second), loadavg())
		}
		runs = append(runs, rows)
		res.Notes = append(res.Notes, notes...)
		res.Profiles = append(res.Profiles, r.profiles...)
		if err != nil {
			runErr = fmt.Errorf("run %d: %w", i, err)
			break
		}
	}
	res.Machine["loadavg_end"] = loadavg()
	cs := combine(runs)
	switch cfg.scenario {
	case "broadcast":
		cs = append(cs, broadcastSummary(cs, len(runs), float64(cfg.p99Limit)/float64(time.Millisecond))...)
	case "cluster":
		cs = append(cs, clusterSummary(cs, len(runs), float64(cfg.p99Limit)/float64(time.Millisecond))...)
	}
	res.Rows = jsonRows(cs, cfg.runs)
	res.Targets = evalTargets(cfg.scenario, cs)
	res.Notes = dedupe(res.Notes)
	if runErr != nil {
		res.Error = runErr.Error()
	}
	if err := writeJSON(stdout, res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s: median of %d run(s); load average %s at start, %s at end\n", cfg.scenario, len(runs), res.Machine["loadavg_start"], res.Machine["loadavg_end"])
	writeTables(stdout, cs, cfg.markdown)
	writeTargets(stdout, res.Targets)
	for _, n := range res.Notes {
		fmt.Fprintf(stdout, "note: %s\n", n)
	}
	if len(res.Profiles) > 0 {
		fmt.Fprintf(stdout, "profiles: %s\n", strings.Join(res.Profiles, " "))
	}
	if cfg.svg != "" && len(cs) > 0 {
		if err := writePlot(cfg.svg, len(runs), cs); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "plot: %s\n", cfg.svg)
	}
	return runErr
}

// replot draws the broadcast plot from a saved JSON result.
func replot(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var res jsonResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return fmt.Errorf("%s: the first line is not a loadgen result: %w", in, err)
	}
	var cs []combined
	for _, r := range res.Rows {
		c := combined{Group: r.Group, Label: r.Label, Names: r.Ordered, Values: map[string][]float64{}}
		for k, v := range r.Median {
			c.Values[k] = []float64{v}
		}
		cs = append(cs, c)
	}
	return writePlot(out, res.Runs, cs)
}

// writePlot writes the plot of cs to file: the cluster batch sweep's
// cost per message when cs has one, else the broadcast latency plot.
func writePlot(file string, runs int, cs []combined) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if sw := sweepSeries(cs); len(sw) > 0 {
		err = writeSweepSVG(f, fmt.Sprintf("Tidings cluster: CPU per message vs publish batch size (median of %d runs)", runs), sw)
	} else {
		err = writeSVG(f, fmt.Sprintf("Tidings broadcast: latency vs delivery rate (median of %d runs)", runs), broadcastSeries(cs))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
