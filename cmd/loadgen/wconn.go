//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

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
