//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// A worker is a child process (the loadgen re-executed with -worker) that
// holds up to maxPerWorker connections. The coordinator drives it with one
// JSON command per line on its stdin; every command is answered with one
// workerReport line on its stdout.

// maxPerWorker keeps each process well under the 20 000 open files one
// process may have here.
const maxPerWorker = 15000

// workerSpec is a worker's fixed configuration, the first line on stdin.
type workerSpec struct {
	ID         int      `json:"id"`
	URLs       []string `json:"urls"` // connection i dials URLs[i % len]
	Sources    []string `json:"sources"`
	ReadBuffer int      `json:"read_buffer"`
	Subs       subSpec  `json:"subs"`
	Dials      int      `json:"dials"` // dials in flight at once
	// Mode is "epoll" (a few poller goroutines read every socket) or
	// "goroutine" (one reader goroutine per connection).
	Mode string `json:"mode"`
}

// workerCmd is one command from the coordinator.
type workerCmd struct {
	// Op is "open" (connections First..First+Count-1), "churn" (open Rate
	// connections per second from index First on, each closed after Life),
	// "stopchurn", "report" or "close".
	Op    string        `json:"op"`
	First int           `json:"first,omitempty"`
	Count int           `json:"count,omitempty"`
	Rate  float64       `json:"rate,omitempty"`
	Life  time.Duration `json:"life,omitempty"`
}

// workerReport is a worker's state: gauges, cumulative counters, and the
// deliveries and latencies since the previous report.
type workerReport struct {
	Open         int64          `json:"open"`          // connections open now
	Ready        int64          `json:"ready"`         // open, with every subscription acknowledged
	Opened       int64          `json:"opened"`        // connections established, cumulative
	DialErrors   int64          `json:"dial_errors"`   // cumulative
	ServerClosed int64          `json:"server_closed"` // ended by the broker, cumulative
	SubErrors    int64          `json:"sub_errors"`    // subscribe answered with error, cumulative
	Resets       int64          `json:"resets"`        // reset frames, cumulative
	LastErrors   []string       `json:"last_errors,omitempty"`
	CloseCodes   map[int]int64  `json:"close_codes,omitempty"`
	Recv         uint64         `json:"recv"` // messages, since the last report
	Gaps         uint64         `json:"gaps"`
	Dups         uint64         `json:"dups"`
	BadFrames    uint64         `json:"bad_frames"`
	Lat          wireHist       `json:"lat"`       // publish → receive, since the last report
	ReadyLat     wireHist       `json:"ready_lat"` // dial → every subscription acknowledged, since the last report
	Extra        map[string]int `json:"extra,omitempty"`
}

// statShard collects deliveries from the connections hashed to it.
type statShard struct {
	mu   sync.Mutex
	lat  hist
	recv uint64
	gaps uint64
	dups uint64
	bad  uint64
	_    [64]byte
}

const numShards = 16

type worker struct {
	spec    workerSpec
	sources []net.IP
	shards  [numShards]statShard
	ctx     context.Context

	open, ready, opened, dialErrs, serverClosed, subErrors, resets atomic.Int64

	// mu guards conns, errs, closeCodes and readyHist.
	mu         sync.Mutex
	conns      map[*wconn]struct{}
	errs       []string
	closeCodes map[int]int64
	readyHist  hist

	wg         sync.WaitGroup // connection goroutines, or connections of the pollers
	pollers    []*poller      // epoll mode; nil: a goroutine per connection
	churnStop  chan struct{}
	churnDone  chan struct{}
	closedOnce sync.Once
}

// runWorker is the -worker mode: it reads its spec and commands from in
// and answers on out until "close" or EOF.
func runWorker(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		return errors.New("worker: no spec on stdin")
	}
	var spec workerSpec
	if err := json.Unmarshal(sc.Bytes(), &spec); err != nil {
		return fmt.Errorf("worker: bad spec: %w", err)
	}
	if len(spec.URLs) == 0 || len(spec.Sources) == 0 {
		return errors.New("worker: spec needs urls and sources")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &worker{spec: spec, ctx: ctx, conns: map[*wconn]struct{}{}, closeCodes: map[int]int64{}}
	for _, s := range spec.Sources {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("worker: bad source address %q", s)
		}
		w.sources = append(w.sources, ip)
	}
	if w.spec.ReadBuffer <= 0 {
		w.spec.ReadBuffer = 4096
	}
	if w.spec.Dials <= 0 {
		w.spec.Dials = 64
	}
	if spec.Mode != "goroutine" {
		for id := range max(1, runtime.GOMAXPROCS(0)) {
			p, err := newPoller(w, id)
			if err != nil {
				return err
			}
			w.pollers = append(w.pollers, p)
			go p.run()
		}
	}
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var cmd workerCmd
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			return fmt.Errorf("worker: bad command: %w", err)
		}
		switch cmd.Op {
		case "open":
			go w.openRange(cmd.First, cmd.Count)
		case "churn":
			w.startChurn(cmd.First, cmd.Rate, cmd.Life)
		case "stopchurn":
			w.stopChurn()
		case "report":
		case "close":
			w.stopChurn()
			w.closeAll()
			return enc.Encode(w.report())
		default:
			return fmt.Errorf("worker: unknown op %q", cmd.Op)
		}
		if err := enc.Encode(w.report()); err != nil {
			return err
		}
	}
	w.stopChurn()
	w.closeAll()
	return sc.Err()
}

func (w *worker) noteErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 5 {
		w.errs = append(w.errs, err.Error())
	}
}

// openRange opens connections first..first+count-1, spec.Dials at a time.
func (w *worker) openRange(first, count int) {
	sem := make(chan struct{}, w.spec.Dials)
	var wg sync.WaitGroup
	for i := first; i < first+count; i++ {
		select {
		case sem <- struct{}{}:
		case <-w.ctx.Done():
			return
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := w.dial(i); err != nil {
				w.dialErrs.Add(1)
				w.noteErr(err)
			}
		}(i)
	}
	wg.Wait()
}

// sourceFor is connection i's source address: round robin, so that each
// address holds an equal share.
func (w *worker) sourceFor(i int) net.IP { return w.sources[i%len(w.sources)] }

// dial opens connection i, subscribes it and starts its reader.
func (w *worker) dial(i int) (*wconn, error) {
	src := w.sourceFor(i)
	d := ws.Dialer{
		Protocols: []string{"pubsub.v1"},
		Timeout:   15 * time.Second,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
			return nd.DialContext(ctx, network, addr)
		},
	}
	start := time.Now()
	nc, br, _, err := d.Dial(w.ctx, w.spec.URLs[i%len(w.spec.URLs)])
	if err != nil {
		return nil, fmt.Errorf("dial from %s: %w", src, err)
	}
	c := &wconn{w: w, idx: i, nc: nc, start: start, buf: make([]byte, 0, w.spec.ReadBuffer), fd: -1, closeCode: -1}
	if br != nil {
		// Frames the server sent right after its handshake answer.
		n := br.Buffered()
		b, _ := br.Peek(n)
		c.buf = append(c.buf, b...)
		ws.PutReader(br)
	}
	pats := w.spec.Subs.patterns(i)
	c.pending = len(pats)
	var bufs net.Buffers
	for k, p := range pats {
		cmd, _ := json.Marshal(map[string]string{"op": "subscribe", "topic": p, "ref": strconv.Itoa(k)})
		f := ws.NewTextFrame(cmd)
		f = ws.MaskFrameInPlace(f)
		bb, err := ws.CompileFrame(f)
		if err != nil {
			_ = nc.Close()
			return nil, err
		}
		bufs = append(bufs, bb)
	}
	w.mu.Lock()
	w.conns[c] = struct{}{}
	w.mu.Unlock()
	w.open.Add(1)
	w.opened.Add(1)
	if _, err := bufs.WriteTo(nc); err != nil {
		w.forget(c)
		_ = nc.Close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	w.wg.Add(1)
	if w.pollers == nil {
		go c.readLoop()
		return c, nil
	}
	if err := w.pollers[i%len(w.pollers)].add(c); err != nil {
		w.wg.Done()
		w.forget(c)
		_ = nc.Close()
		return nil, err
	}
	return c, nil
}

func (w *worker) forget(c *wconn) {
	w.mu.Lock()
	delete(w.conns, c)
	w.mu.Unlock()
	w.open.Add(-1)
}

// startChurn opens rate connections per second (indexes from first on),
// each closed after life, until stopChurn.
func (w *worker) startChurn(first int, rate float64, life time.Duration) {
	w.stopChurn()
	stop, done := make(chan struct{}), make(chan struct{})
	w.churnStop, w.churnDone = stop, done
	go func() {
		defer close(done)
		const tick = 10 * time.Millisecond
		t := time.NewTicker(tick)
		defer t.Stop()
		var (
			acc    float64
			next   = first
			live   []*wconn
			bornAt []time.Time
			wg     sync.WaitGroup
			mu     sync.Mutex
		)
		defer func() {
			wg.Wait()
			for _, c := range live {
				c.close()
			}
		}()
		for {
			select {
			case <-stop:
				return
			case <-w.ctx.Done():
				return
			case now := <-t.C:
				acc += rate * tick.Seconds()
				for ; acc >= 1; acc-- {
					i := next
					next++
					wg.Add(1)
					go func() {
						defer wg.Done()
						c, err := w.dial(i)
						if err != nil {
							w.dialErrs.Add(1)
							w.noteErr(err)
							return
						}
						mu.Lock()
						live = append(live, c)
						bornAt = append(bornAt, time.Now())
						mu.Unlock()
					}()
				}
				mu.Lock()
				k := 0
				for k < len(live) && now.Sub(bornAt[k]) >= life {
					live[k].close()
					k++
				}
				live, bornAt = live[k:], bornAt[k:]
				mu.Unlock()
			}
		}
	}()
}

func (w *worker) stopChurn() {
	if w.churnStop == nil {
		return
	}
	close(w.churnStop)
	<-w.churnDone
	w.churnStop, w.churnDone = nil, nil
}

// closeAll closes every connection and waits for the readers.
func (w *worker) closeAll() {
	w.closedOnce.Do(func() {
		w.mu.Lock()
		conns := make([]*wconn, 0, len(w.conns))
		for c := range w.conns {
			conns = append(conns, c)
		}
		w.mu.Unlock()
		for _, c := range conns {
			c.closing.Store(true)
			c.shutdown()
		}
		w.wg.Wait()
		for _, p := range w.pollers {
			p.stop()
		}
	})
}

// report collects the counters and the deltas since the last report.
func (w *worker) report() workerReport {
	r := workerReport{
		Open: w.open.Load(), Ready: w.ready.Load(), Opened: w.opened.Load(),
		DialErrors: w.dialErrs.Load(), ServerClosed: w.serverClosed.Load(),
		SubErrors: w.subErrors.Load(), Resets: w.resets.Load(),
	}
	var lat hist
	for i := range w.shards {
		sh := &w.shards[i]
		sh.mu.Lock()
		lat.merge(&sh.lat)
		sh.lat.reset()
		r.Recv += sh.recv
		r.Gaps += sh.gaps
		r.Dups += sh.dups
		r.BadFrames += sh.bad
		sh.recv, sh.gaps, sh.dups, sh.bad = 0, 0, 0, 0
		sh.mu.Unlock()
	}
	r.Lat = lat.wire()
	w.mu.Lock()
	r.ReadyLat = w.readyHist.wire()
	w.readyHist.reset()
	r.LastErrors = append(r.LastErrors, w.errs...)
	w.errs = w.errs[:0]
	if len(w.closeCodes) > 0 {
		r.CloseCodes = map[int]int64{}
		for k, v := range w.closeCodes {
			r.CloseCodes[k] = v
		}
	}
	w.mu.Unlock()
	return r
}

// sourceAddrs returns n loopback source addresses from 127.0.0.2 on
// (127.0.0.2 … 127.0.0.255, 127.0.1.0, …).
func sourceAddrs(n int) []string {
	out := make([]string, n)
	for k := range out {
		v := 2 + k // offset from 127.0.0.0
		out[k] = fmt.Sprintf("127.%d.%d.%d", (v>>16)&0xff, (v>>8)&0xff, v&0xff)
	}
	return out
}

// workerEnvMarker keeps a worker from being started by mistake by hand.
const workerEnvMarker = "TIDINGS_LOADGEN_WORKER"

func isWorkerEnv() bool { return strings.TrimSpace(os.Getenv(workerEnvMarker)) == "1" }
