//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// runner runs one scenario once.
type runner struct {
	cfg    config
	tmp    string
	bin    string
	have   map[string]bool
	stderr io.Writer
	run    int // which of cfg.runs this is, from 1

	// mu guards fl, status and the profiles list.
	mu       sync.Mutex
	fl       *fleet
	status   string
	profiles []string
	pids     []int
}

// target is a broker to load: its WebSocket URL, HTTP base and pid (0
// when unknown).
type target struct {
	ws, http string
	pid      int
	pprof    string
}

func (r *runner) setStatus(s string) {
	r.mu.Lock()
	r.status = s
	r.mu.Unlock()
}

func (r *runner) setFleet(f *fleet, pids []int) {
	r.mu.Lock()
	r.fl, r.pids = f, pids
	r.mu.Unlock()
}

// progressLoop prints the live line until ctx ends.
func (r *runner) progressLoop(ctx context.Context) {
	if r.cfg.quiet {
		return
	}
	tty := isTerminal(os.Stderr)
	every := time.Second
	if !tty {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprint(r.stderr, "\r\033[K")
			}
			return
		case <-t.C:
		}
		r.mu.Lock()
		fl, status, pids := r.fl, r.status, r.pids
		r.mu.Unlock()
		line := status
		if fl != nil {
			cum, last, err := fl.poll()
			if err == nil {
				fl.mu.Lock()
				d := fl.lastD
				fl.mu.Unlock()
				rate := 0.0
				if d > 0 {
					rate = float64(last.recv) / d.Seconds()
				}
				var rss int64
				for _, p := range pids {
					if s, err := sampleProc(p); err == nil {
						rss += s.RSS
					}
				}
				line = fmt.Sprintf("%s | conns %d/%d | %s msgs/s | p50 %s p99 %s | gaps %d dups %d closed %d | broker RSS %s",
					status, cum.ready, cum.open, human(rate), ms(last.lat.quantile(0.5)), ms(last.lat.quantile(0.99)),
					last.gaps, last.dups, cum.serverClosed, mib(rss))
			}
		}
		if line == "" {
			continue
		}
		if tty {
			fmt.Fprintf(r.stderr, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(r.stderr, line)
		}
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// brokers starts n nodes with extra flags, or returns the -url broker.
func (r *runner) brokers(ctx context.Context, n int, extra ...string) ([]target, func(), error) {
	if r.cfg.url != "" {
		u, _ := url.Parse(r.cfg.url)
		pid := r.cfg.brokerPID
		if pid == 0 {
			port, _ := strconv.Atoi(u.Port())
			pid = listenerPID(port)
		}
		return []target{{ws: r.cfg.url, http: "http://" + u.Host, pid: pid}}, func() {}, nil
	}
	var procs []*brokerProc
	stop := func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Add(1)
			go func() { defer wg.Done(); p.stop() }()
		}
		wg.Wait()
	}
	var out []target
	for i := 0; i < n; i++ {
		args := append(append([]string{}, extra...), r.cfg.brokerArgs...)
		p, err := startBroker(ctx, r.bin, r.have, args, r.tmp, len(procs)+1000*r.run)
		if err != nil {
			stop()
			return nil, nil, err
		}
		procs = append(procs, p)
		out = append(out, target{ws: "ws://" + p.addr + "/v1/ws", http: "http://" + p.addr, pid: p.pid(), pprof: p.pprofAddr})
	}
	return out, stop, nil
}

func pidsOf(ts []target) []int {
	var out []int
	for _, t := range ts {
		if t.pid > 0 {
			out = append(out, t.pid)
		}
	}
	return out
}

// sampleAll sums RSS and CPU over pids.
func sampleAll(pids []int) procSample {
	var s procSample
	s.At = time.Now()
	for _, p := range pids {
		if x, err := sampleProc(p); err == nil {
			s.RSS += x.RSS
			s.CPU += x.CPU
			s.Writes += x.Writes
		}
	}
	return s
}

// selfCPU is the coordinator's own CPU time.
func selfCPU() time.Duration {
	s, _ := sampleProc(os.Getpid())
	return s.CPU
}

// connectLimit is how long opening n connections may take.
func connectLimit(n int) time.Duration { return 30*time.Second + time.Duration(n)*5*time.Millisecond }

// phaseOut is what a fixed-rate phase measured.
type phaseOut struct {
	pub        pubResult
	exp        uint64
	ph         agg
	start, end agg // cumulative worker state
	wall       time.Duration
	drain      time.Duration
	brokerCPU  time.Duration
	loadCPU    time.Duration
	rss        int64
	writes     int64 // the brokers' write system calls
}

// measure publishes at rate (messages/s) for d and waits until every
// expected delivery arrived (or deliveries stop coming).
func (r *runner) measure(ctx context.Context, fl *fleet, pub *publisher, rate float64, d time.Duration, perTopic []int, ts []target, name string) (phaseOut, error) {
	var o phaseOut
	var err error
	if o.start, err = fl.resetPhase(); err != nil {
		return o, err
	}
	pids := pidsOf(ts)
	b0, l0, s0 := sampleAll(pids), fl.cpu(), selfCPU()
	stopProf := r.profile(ctx, ts, d, name)
	o.pub = pub.run(ctx, rate, d, r.cfg.batchInterval)
	pubEnd := time.Now()
	if perTopic != nil {
		o.exp = expected(o.pub, perTopic)
	}
	// Drain: until all expected deliveries are in, or none came for 2 s.
	var lastRecv uint64
	lastChange := time.Now()
	for time.Since(pubEnd) < 20*time.Second {
		if _, _, err := fl.poll(); err != nil {
			return o, err
		}
		fl.mu.Lock()
		got := fl.phase.recv
		fl.mu.Unlock()
		if o.exp > 0 && got >= o.exp {
			break
		}
		if got != lastRecv {
			lastRecv, lastChange = got, time.Now()
		} else if time.Since(lastChange) > 2*time.Second {
			break
		}
		if ctx.Err() != nil {
			return o, ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	o.drain = time.Since(pubEnd)
	b1, l1, s1 := sampleAll(pids), fl.cpu(), selfCPU()
	stopProf()
	o.wall = b1.At.Sub(b0.At)
	o.brokerCPU = b1.CPU - b0.CPU
	o.writes = b1.Writes - b0.Writes
	o.loadCPU = (l1 - l0) + (s1 - s0)
	o.rss = b1.RSS
	o.end, o.ph, err = fl.takePhase()
	return o, err
}

// latencyMetrics are the percentiles of h in milliseconds.
func latencyMetrics(prefix string, h *hist) []metric {
	return []metric{
		{prefix + "p50_ms", h.quantile(0.50) / 1000},
		{prefix + "p90_ms", h.quantile(0.90) / 1000},
		{prefix + "p99_ms", h.quantile(0.99) / 1000},
		{prefix + "p99.9_ms", h.quantile(0.999) / 1000},
		{prefix + "max_ms", h.quantile(1) / 1000},
	}
}

// phaseMetrics are the common figures of a fixed-rate phase.
func (o phaseOut) metrics(rate float64) []metric {
	active := o.pub.elapsed + o.drain
	ms := []metric{
		{"publish_rate_target", rate},
		{"publish_rate", float64(o.pub.sent) / o.pub.elapsed.Seconds()},
		{"deliveries_per_s", float64(o.ph.recv) / active.Seconds()},
	}
	ms = append(ms, latencyMetrics("", &o.ph.lat)...)
	missing := 0.0
	if o.exp > o.ph.recv {
		missing = float64(o.exp - o.ph.recv)
	}
	ms = append(ms,
		metric{"expected", float64(o.exp)},
		metric{"received", float64(o.ph.recv)},
		metric{"missing", missing},
		metric{"gaps", float64(o.ph.gaps)},
		metric{"dups", float64(o.ph.dups)},
		metric{"closed_by_broker", float64(o.end.serverClosed - o.start.serverClosed)},
		metric{"publish_errors", float64(o.pub.failed)},
		metric{"broker_cpu_pct", 100 * o.brokerCPU.Seconds() / o.wall.Seconds()},
		metric{"loadgen_cpu_pct", 100 * o.loadCPU.Seconds() / o.wall.Seconds()},
		metric{"broker_rss_mb", float64(o.rss) / (1 << 20)},
	)
	if o.writes > 0 {
		// Frames per writev: what the session writers' batching achieves.
		ms = append(ms, metric{"deliveries_per_write", float64(o.ph.recv) / float64(o.writes)},
			metric{"broker_cpu_us_per_delivery", 1e6 * o.brokerCPU.Seconds() / float64(max(o.ph.recv, 1))})
	}
	return ms
}

// lossless reports whether the phase lost, repeated or cut nothing.
func (o phaseOut) lossless() bool {
	return o.ph.recv >= o.exp && o.ph.gaps == 0 && o.ph.dups == 0 &&
		o.end.serverClosed == o.start.serverClosed && o.pub.failed == 0
}

// hardFileLimit is this process's hard RLIMIT_NOFILE, which the brokers
// it starts inherit.
func hardFileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max > math.MaxInt32 {
		return 1 << 20
	}
	return int(lim.Max)
}
