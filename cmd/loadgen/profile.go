//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// profile captures the brokers' profiles for a phase of length d into
// -profile-dir, and returns a function that waits for the captures and
// writes their text summaries. With /debug/pprof on the broker it takes a
// CPU profile and the allocations of the phase; without it, a CPU profile
// with perf when perf is installed; otherwise nothing.
func (r *runner) profile(ctx context.Context, ts []target, d time.Duration, name string) (stop func()) {
	if r.cfg.profileDir == "" {
		return func() {}
	}
	if err := os.MkdirAll(r.cfg.profileDir, 0o755); err != nil {
		fmt.Fprintf(r.stderr, "loadgen: profile dir: %v\n", err)
		return func() {}
	}
	var wg sync.WaitGroup
	for i, t := range ts {
		if t.pid <= 0 {
			continue
		}
		base := filepath.Join(r.cfg.profileDir, fmt.Sprintf("%s-run%d-node%d", name, r.run, i+1))
		pp := t.pprof
		if pp == "" && hasPprof(t.http) {
			pp = strings.TrimPrefix(t.http, "http://")
		}
		switch {
		case pp != "":
			wg.Add(1)
			go func() { defer wg.Done(); r.pprofCapture(ctx, pp, d, base) }()
		case strings.HasPrefix(name, "idle"):
			// perf sees CPU only; an idle phase has none worth showing.
		default:
			if _, err := exec.LookPath("perf"); err == nil {
				wg.Add(1)
				go func() { defer wg.Done(); r.perfCapture(ctx, t.pid, d, base) }()
			}
		}
	}
	return wg.Wait
}

// hasPprof reports whether base serves /debug/pprof/.
func hasPprof(base string) bool {
	resp, err := http.Get(base + "/debug/pprof/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func fetch(ctx context.Context, url, file string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (r *runner) pprofCapture(ctx context.Context, addr string, d time.Duration, base string) {
	secs := max(1, int(d.Seconds()))
	u := "http://" + addr + "/debug/pprof/"
	heap0 := base + ".allocs0.pprof"
	_ = fetch(ctx, u+"allocs?gc=1", heap0)
	cpu := base + ".cpu.pprof"
	if err := fetch(ctx, u+"profile?seconds="+strconv.Itoa(secs), cpu); err != nil {
		fmt.Fprintf(r.stderr, "loadgen: cpu profile: %v\n", err)
		return
	}
	heap1 := base + ".allocs.pprof"
	_ = fetch(ctx, u+"allocs?gc=1", heap1)
	r.summarize(base+".cpu.txt", "go", "tool", "pprof", "-top", "-nodecount=30", cpu)
	r.summarize(base+".allocs.txt", "go", "tool", "pprof", "-top", "-nodecount=30", "-sample_index=alloc_space", "-diff_base", heap0, heap1)
	r.summarize(base+".heap.txt", "go", "tool", "pprof", "-top", "-nodecount=30", "-sample_index=inuse_space", heap1)
}

func (r *runner) perfCapture(ctx context.Context, pid int, d time.Duration, base string) {
	data := base + ".perf.data"
	secs := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	cmd := exec.CommandContext(ctx, "perf", "record", "-q", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", data, "--", "sleep", secs)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(r.stderr, "loadgen: perf record: %v %s\n", err, out)
		return
	}
	r.summarize(base+".perf.txt", "perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "symbol", "-g", "none", "--percent-limit", "0.5")
	r.summarize(base+".perf-callers.txt", "perf", "report", "-i", data, "--stdio", "--children", "--sort", "symbol", "-g", "none", "--percent-limit", "3")
	r.summarize(base+".perf-dso.txt", "perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso", "-g", "none")
	_ = os.Remove(data)
}

// summarize runs a profile tool and keeps its text output.
func (r *runner) summarize(file string, name string, args ...string) {
	out, err := exec.Command(name, args...).Output()
	if err != nil && len(out) == 0 {
		fmt.Fprintf(r.stderr, "loadgen: %s %s: %v\n", name, strings.Join(args, " "), err)
		return
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
			continue
		}
		// perf pads each line with empty columns.
		l = strings.TrimRight(strings.TrimRight(strings.TrimRight(l, " -"), " "), " ")
		keep = append(keep, l)
		if len(keep) >= 45 {
			break
		}
	}
	if err := os.WriteFile(file, []byte(strings.Join(keep, "\n")+"\n"), 0o644); err != nil {
		return
	}
	r.mu.Lock()
	r.profiles = append(r.profiles, file)
	r.mu.Unlock()
}
