//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// workerProc is a worker child process and the pipe to it.
type workerProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	first int // its connections' first global index
	count int
}

// startWorker re-executes the loadgen binary in worker mode.
func startWorker(spec workerSpec) (*workerProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-worker")
	cmd.Env = append(os.Environ(), workerEnvMarker+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting worker: %w", err)
	}
	sc := bufio.NewScanner(outp)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	w := &workerProc{cmd: cmd, in: in, out: sc}
	b, _ := json.Marshal(spec)
	if _, err := in.Write(append(b, '\n')); err != nil {
		w.kill()
		return nil, err
	}
	return w, nil
}

// do sends one command and reads its answer.
func (w *workerProc) do(c workerCmd) (workerReport, error) {
	var r workerReport
	b, _ := json.Marshal(c)
	if _, err := w.in.Write(append(b, '\n')); err != nil {
		return r, fmt.Errorf("worker %d: %w", w.cmd.Process.Pid, err)
	}
	if !w.out.Scan() {
		err := w.out.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return r, fmt.Errorf("worker %d: %w", w.cmd.Process.Pid, err)
	}
	return r, json.Unmarshal(w.out.Bytes(), &r)
}

// stop asks the worker to close its connections and waits for it.
func (w *workerProc) stop() {
	done := make(chan struct{})
	go func() {
		_, _ = w.do(workerCmd{Op: "close"})
		_ = w.in.Close()
		_ = w.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		w.kill()
		<-done
	}
}

// kill ends this worker process (by its pid).
func (w *workerProc) kill() {
	if w.cmd.Process != nil {
		_ = w.cmd.Process.Kill()
	}
}

// agg merges the reports of every worker.
type agg struct {
	open, ready, opened, dialErrs, serverClosed, subErrors, resets int64
	recv, gaps, dups, bad                                          uint64
	lat, readyLat                                                  hist
	closeCodes                                                     map[int]int64
	errs                                                           []string
}

// addDelta adds the interval counters of r (recv, gaps, dups, latencies).
func (a *agg) addDelta(r workerReport) {
	a.recv += r.Recv
	a.gaps += r.Gaps
	a.dups += r.Dups
	a.bad += r.BadFrames
	a.lat.addWire(r.Lat)
	a.readyLat.addWire(r.ReadyLat)
}

func (a *agg) addDeltas(o *agg) {
	a.recv += o.recv
	a.gaps += o.gaps
	a.dups += o.dups
	a.bad += o.bad
	a.lat.merge(&o.lat)
	a.readyLat.merge(&o.readyLat)
}

// fleet is the set of workers of one phase, and the accumulated state of
// their reports.
type fleet struct {
	workers []*workerProc

	// mu serializes the request/answer exchanges with the workers and
	// guards phase, cum and last.
	mu    sync.Mutex
	phase agg // deltas since resetPhase
	cum   agg // gauges and cumulative counters of the last poll
	last  agg // the last poll's interval
	lastT time.Time
	lastD time.Duration
}

// newFleet starts enough workers for n connections (and churners) and
// assigns each a share of the indexes 0..n-1.
func newFleet(cfg config, n int, urls []string, subs subSpec, extraWorkers int) (*fleet, error) {
	nw := cfg.workers
	if nw == 0 {
		nw = (n + maxPerWorker - 1) / maxPerWorker
	}
	nw = max(nw, 1, extraWorkers)
	if (n+nw-1)/nw > maxPerWorker {
		return nil, usageErr{fmt.Sprintf("%d connections need at least %d workers (at most %d each)", n, (n+maxPerWorker-1)/maxPerWorker, maxPerWorker)}
	}
	ips := (n + cfg.perIP - 1) / cfg.perIP
	if cfg.scenario == "churn" {
		// Churned connections leave ports in TIME_WAIT: spread them wide.
		ips = max(ips, 64)
	}
	spec := workerSpec{URLs: urls, Sources: sourceAddrs(max(ips, 1)), ReadBuffer: cfg.readBuffer, Subs: subs, Mode: cfg.client}
	f := &fleet{}
	per := (n + nw - 1) / nw
	for i := 0; i < nw; i++ {
		spec.ID = i
		w, err := startWorker(spec)
		if err != nil {
			f.stop()
			return nil, err
		}
		w.first = i * per
		w.count = max(0, min(per, n-i*per))
		f.workers = append(f.workers, w)
	}
	return f, nil
}

// all sends c to every worker at once and returns their answers.
func (f *fleet) all(c func(w *workerProc) workerCmd) ([]workerReport, error) {
	reps := make([]workerReport, len(f.workers))
	errs := make([]error, len(f.workers))
	var wg sync.WaitGroup
	for i, w := range f.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i], errs[i] = w.do(c(w))
		}()
	}
	wg.Wait()
	return reps, errors.Join(errs...)
}

// poll collects a report from every worker, adds the interval to the
// phase and returns the new state.
func (f *fleet) poll() (cum, interval agg, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pollLocked(workerCmd{Op: "report"})
}

func (f *fleet) pollLocked(cmd workerCmd) (cum, interval agg, err error) {
	reps, err := f.all(func(*workerProc) workerCmd { return cmd })
	if err != nil {
		return cum, interval, err
	}
	cum.closeCodes = map[int]int64{}
	for _, r := range reps {
		cum.open += r.Open
		cum.ready += r.Ready
		cum.opened += r.Opened
		cum.dialErrs += r.DialErrors
		cum.serverClosed += r.ServerClosed
		cum.subErrors += r.SubErrors
		cum.resets += r.Resets
		cum.errs = append(cum.errs, r.LastErrors...)
		for k, v := range r.CloseCodes {
			cum.closeCodes[k] += v
		}
		interval.addDelta(r)
	}
	now := time.Now()
	if !f.lastT.IsZero() {
		f.lastD = now.Sub(f.lastT)
	}
	f.lastT = now
	f.phase.addDeltas(&interval)
	f.cum, f.last = cum, interval
	return cum, interval, nil
}

// command sends an op to every worker (answers are polled like reports).
func (f *fleet) command(c func(w *workerProc) workerCmd) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	reps, err := f.all(c)
	if err != nil {
		return err
	}
	var interval agg
	for _, r := range reps {
		interval.addDelta(r)
	}
	f.phase.addDeltas(&interval)
	return nil
}

// resetPhase polls once (so that what came before is attributed to the
// previous phase) and starts a new phase.
func (f *fleet) resetPhase() (agg, error) {
	cum, _, err := f.poll()
	f.mu.Lock()
	f.phase = agg{}
	f.mu.Unlock()
	return cum, err
}

// takePhase polls once more and returns the phase's deltas.
func (f *fleet) takePhase() (cum, phase agg, err error) {
	cum, _, err = f.poll()
	f.mu.Lock()
	phase = f.phase
	f.mu.Unlock()
	return cum, phase, err
}

// openAll opens each worker's share of connections and waits until every
// one is ready (subscribed), or fails after limit.
func (f *fleet) openAll(ctx context.Context, n int, limit time.Duration, progress func(string)) (agg, error) {
	if err := f.command(func(w *workerProc) workerCmd {
		return workerCmd{Op: "open", First: w.first, Count: w.count}
	}); err != nil {
		return agg{}, err
	}
	deadline := time.Now().Add(limit)
	for {
		cum, _, err := f.poll()
		if err != nil {
			return cum, err
		}
		progress(fmt.Sprintf("connecting: %d/%d ready, %d open, %d dial errors", cum.ready, n, cum.open, cum.dialErrs))
		if cum.ready >= int64(n) {
			return cum, nil
		}
		if cum.dialErrs > 0 && cum.opened+cum.dialErrs >= int64(n) {
			return cum, fmt.Errorf("%d of %d connections failed: %s", cum.dialErrs, n, strings.Join(cum.errs, "; "))
		}
		if time.Now().After(deadline) {
			return cum, fmt.Errorf("only %d of %d connections ready after %s (%d dial errors, %d subscribe errors): %s",
				cum.ready, n, limit, cum.dialErrs, cum.subErrors, strings.Join(cum.errs, "; "))
		}
		select {
		case <-ctx.Done():
			return cum, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (f *fleet) stop() {
	var wg sync.WaitGroup
	for _, w := range f.workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.stop() }()
	}
	wg.Wait()
}

// cpu returns the workers' CPU time so far.
func (f *fleet) cpu() time.Duration {
	var t time.Duration
	for _, w := range f.workers {
		if s, err := sampleProc(w.cmd.Process.Pid); err == nil {
			t += s.CPU
		}
	}
	return t
}
