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
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
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

// wconn is one WebSocket session of a worker.
type wconn struct {
	w       *worker
	idx     int
	nc      net.Conn
	buf     []byte
	track   tracker
	pending int // subscriptions not yet answered (reader goroutine only)
	start   time.Time
	isReady bool

	wmu       sync.Mutex // serializes writes
	closing   atomic.Bool
	fd        int // the socket in epoll mode (the poller owns it); -1 in goroutine mode
	closeCode int // the server's close code; -1: none received
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

// write sends one masked client frame.
func (c *wconn) write(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.fd >= 0 {
		f := ws.MaskFrameInPlace(ws.NewFrame(op, true, p))
		b, err := ws.CompileFrame(f)
		if err != nil {
			return err
		}
		// Control frames are small: one write of a non-blocking socket
		// either takes all of it or the peer is not reading anyway.
		_, err = syscall.Write(c.fd, b)
		return err
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return wsutil.WriteClientMessage(c.nc, op, p)
}

// close ends the session from the client side: a 1000 close frame, then
// the TCP connection. The reader sees the end and cleans up.
func (c *wconn) close() {
	if c.closing.Swap(true) {
		return
	}
	_ = c.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	c.shutdown()
}

// shutdown makes the reader see the end of the connection. In epoll mode
// the poller alone closes the descriptor, so that its number cannot be
// reused under it.
func (c *wconn) shutdown() {
	if c.fd >= 0 {
		_ = syscall.Shutdown(c.fd, syscall.SHUT_RDWR)
		return
	}
	_ = c.nc.Close()
}

// latBatch is how many latencies a sink collects before taking its
// shard's lock.
const latBatch = 128

// sink accumulates deliveries for one reader (a connection goroutine or
// a poller) and flushes them to a shard in batches.
type sink struct {
	sh                    *statShard
	lats                  [latBatch]int64
	nlat                  int
	recv, gaps, dups, bad uint64
}

func (s *sink) flush() {
	if s.nlat == 0 && s.recv == 0 && s.bad == 0 {
		return
	}
	s.sh.mu.Lock()
	for _, l := range s.lats[:s.nlat] {
		s.sh.lat.record(time.Duration(l))
	}
	s.sh.recv += s.recv
	s.sh.gaps += s.gaps
	s.sh.dups += s.dups
	s.sh.bad += s.bad
	s.sh.mu.Unlock()
	s.nlat, s.recv, s.gaps, s.dups, s.bad = 0, 0, 0, 0, 0
}

// errPeerClosed is the end of a session by the server's close frame.
var errPeerClosed = errors.New("close frame received")

// consume handles every complete frame in c.buf, received at now, and
// keeps the incomplete tail at the front of the buffer (grown when a
// frame needs more room). It returns errPeerClosed after a close frame.
func (c *wconn) consume(s *sink, now int64) error {
	r := 0
	var rerr error
	for rerr == nil {
		op, p, n, need, err := nextFrame(c.buf[r:])
		if err != nil {
			rerr = err
			break
		}
		if n == 0 {
			if need > cap(c.buf) {
				nb := make([]byte, len(c.buf)-r, need)
				copy(nb, c.buf[r:])
				c.buf, r = nb, 0
			}
			break
		}
		r += n
		switch op {
		case opText:
			if !isMessage(p) {
				c.control(p)
				continue
			}
			topic, sub, off, ts, err := parseMessage(p)
			if err != nil {
				s.bad++
				continue
			}
			g, d := c.track.observe(sub, topic, off)
			s.gaps += g
			if d {
				s.dups++
			}
			s.recv++
			s.lats[s.nlat] = now - ts
			s.nlat++
			if s.nlat == latBatch {
				s.flush()
			}
		case opPing:
			_ = c.write(ws.OpPong, append([]byte(nil), p...))
		case opClose:
			c.closeCode = 1005
			if len(p) >= 2 {
				c.closeCode = int(p[0])<<8 | int(p[1])
			}
			if !c.closing.Load() {
				_ = c.write(ws.OpClose, p[:min(len(p), 2)])
			}
			rerr = errPeerClosed
		case opPong:
		default:
			s.bad++
		}
	}
	if r > 0 {
		n := copy(c.buf[:cap(c.buf)], c.buf[r:])
		c.buf = c.buf[:n]
	}
	return rerr
}

// readLoop is the goroutine mode: it reads and accounts frames until the
// connection ends.
func (c *wconn) readLoop() {
	defer c.w.wg.Done()
	s := sink{sh: &c.w.shards[c.idx%numShards]}
	err := c.consume(&s, time.Now().UnixNano()) // frames that came with the handshake
	for err == nil {
		var n int
		n, err = c.nc.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		if n > 0 {
			if cerr := c.consume(&s, time.Now().UnixNano()); cerr != nil && err == nil {
				err = cerr
			}
		}
		s.flush()
	}
	s.flush()
	_ = c.nc.Close()
	c.ended(err)
}

// ended accounts a connection that is over.
func (c *wconn) ended(err error) {
	w := c.w
	w.forget(c)
	if c.isReady {
		w.ready.Add(-1)
	}
	if !c.closing.Load() && w.ctx.Err() == nil {
		w.serverClosed.Add(1)
		w.mu.Lock()
		w.closeCodes[c.closeCode]++
		w.mu.Unlock()
		if c.closeCode < 0 && !errors.Is(err, io.EOF) {
			w.noteErr(fmt.Errorf("connection %d: %w", c.idx, err))
		}
	}
}

// serverFrame is the fields of a non-message server frame the loadgen uses.
type serverFrame struct {
	Type    string  `json:"type"`
	Topic   string  `json:"topic"`
	Sub     string  `json:"sub"`
	Offset  *uint64 `json:"offset"`
	Code    string  `json:"code"`
	Message string  `json:"message"`
}

// control handles a text frame that is not a message: welcome,
// subscribed, reset, error and the other answers.
func (c *wconn) control(p []byte) {
	var f serverFrame
	if err := json.Unmarshal(p, &f); err != nil {
		c.w.noteErr(fmt.Errorf("bad server frame %.80q: %w", p, err))
		return
	}
	w := c.w
	switch f.Type {
	case "subscribed":
		if f.Offset != nil {
			c.track.start(nil, []byte(f.Topic), *f.Offset)
		}
		c.subAnswered()
	case "reset":
		w.resets.Add(1)
		if f.Offset != nil {
			c.track.start([]byte(f.Sub), []byte(f.Topic), *f.Offset)
		}
	case "error":
		w.subErrors.Add(1)
		w.noteErr(fmt.Errorf("server error %s: %s", f.Code, f.Message))
		c.subAnswered()
	}
}

func (c *wconn) subAnswered() {
	if c.pending == 0 {
		return
	}
	c.pending--
	if c.pending == 0 && !c.isReady {
		c.isReady = true
		c.w.ready.Add(1)
		d := time.Since(c.start)
		c.w.mu.Lock()
		c.w.readyHist.record(d)
		c.w.mu.Unlock()
	}
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
