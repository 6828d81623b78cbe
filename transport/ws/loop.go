package ws

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// eventLoop serves a server's sessions while it has any. Its goroutine
// waits on the poller for idle sockets with bytes to read and starts a
// reader for each, and on every tick it pings the sessions due a
// heartbeat and cuts those silent for two intervals; its writer pool (a
// goroutine per core) writes the sessions' outboxes. The server starts it
// with its first session and stops it with its last, so a server with no
// sessions runs no goroutine.
type eventLoop struct {
	srv  *Server
	poll *poller // nil: no poller here; every session reads on its own goroutine
	tick time.Duration

	stopped atomic.Bool
	stopCh  chan struct{} // closed by stop; wakes the wait and the writers

	// writeq holds the sessions whose writer is to take a turn, in the
	// order they got frames; the pool's goroutines take them.
	writeq writeQueue

	// mu guards byID and lastID.
	mu     sync.Mutex
	byID   map[uint64]*conn
	lastID uint64

	// scratch holds the sessions of a sweep; the loop goroutine alone
	// uses it.
	scratch []*conn
}

func (s *Server) startLoop() *eventLoop {
	l := &eventLoop{
		srv:    s,
		tick:   max(s.cfg.Heartbeat/sweepsPerBeat, time.Millisecond),
		stopCh: make(chan struct{}),
		byID:   make(map[uint64]*conn),
	}
	writers := runtime.GOMAXPROCS(0)
	l.writeq.ready = make(chan struct{}, writers)
	if !s.cfg.GoroutineReaders {
		p, err := newPoller()
		if err != nil {
			s.log.Debug("no poller: a reader goroutine per session", "err", err)
		}
		l.poll = p
	}
	go l.run()
	for range writers {
		go l.write()
	}
	return l
}

// sweepsPerBeat is how many sweeps the loop makes per heartbeat interval.
// Each pings the sessions due; with their phases spread (see register),
// that is a small share of the sessions at a time, not a burst of one
// ping per session that would queue every delivery behind it.
const sweepsPerBeat = 32

// writeQueue is the writer pool's queue of sessions, in two FIFOs:
// fresh, the sessions woken by new frames, and backlog, the sessions
// going on with the rest of a batch larger than a turn (maxTurnBytes).
// When both hold sessions, the writers take from each in turn, so that a
// session that keeps up waits behind at most one backlog turn per fresh
// session ahead of it, however many sessions have megabytes queued, and
// the backlogs still get half of the turns. A session is in the queue at
// most once (its writerState); each FIFO grows on demand and lets its
// array go when it empties.
type writeQueue struct {
	// ready holds a token per writer to wake; a push adds one unless
	// every writer has one already.
	ready chan struct{}

	mu      sync.Mutex
	fresh   connFIFO
	backlog connFIFO
	// backlogNext is set after a fresh turn while backlog is not empty.
	backlogNext bool
}

// push queues c, woken by new frames, and wakes a writer.
func (q *writeQueue) push(c *conn) {
	q.mu.Lock()
	q.fresh.push(c)
	q.mu.Unlock()
	q.wake()
}

// pushBacklog queues c, which has more of a batch to write, and wakes a
// writer.
func (q *writeQueue) pushBacklog(c *conn) {
	q.mu.Lock()
	q.backlog.push(c)
	q.mu.Unlock()
	q.wake()
}

func (q *writeQueue) wake() {
	select {
	case q.ready <- struct{}{}:
	default: // every writer has a token: one of them will take c
	}
}

// pop takes the next session, or nil when the queue is empty.
func (q *writeQueue) pop() *conn {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.backlog.len() > 0 && (q.backlogNext || q.fresh.len() == 0) {
		q.backlogNext = false
		return q.backlog.pop()
	}
	c := q.fresh.pop()
	q.backlogNext = c != nil && q.backlog.len() > 0
	return c
}

// connFIFO is a FIFO of sessions.
type connFIFO struct {
	items []*conn
	head  int
}

func (f *connFIFO) len() int { return len(f.items) - f.head }

func (f *connFIFO) push(c *conn) { f.items = append(f.items, c) }

// pop takes the oldest session, or nil when f is empty.
func (f *connFIFO) pop() *conn {
	if f.head == len(f.items) {
		return nil
	}
	c := f.items[f.head]
	f.items[f.head] = nil
	f.head++
	if f.head == len(f.items) {
		if cap(f.items) > maxIdleQueue {
			f.items = nil
		}
		f.items, f.head = f.items[:0], 0
	}
	return c
}

// maxIdleQueue is the largest array the queue keeps once empty.
const maxIdleQueue = 1024

// write is one goroutine of the writer pool: one per core, each giving
// queued sessions one writev at a time until the queue is empty, then
// waiting for a token.
func (l *eventLoop) write() {
	for {
		if c := l.writeq.pop(); c != nil {
			c.turn()
			continue
		}
		select {
		case <-l.writeq.ready:
		case <-l.stopCh:
			return
		}
	}
}

// stop ends the loop; the server calls it when its last session ends.
func (l *eventLoop) stop() {
	l.stopped.Store(true)
	close(l.stopCh)
	if l.poll != nil {
		l.poll.wake()
	}
}

// add gives c an id and, when there is a poller, puts its socket in the
// poller's set. It reports whether c is polled, and why not when the
// poller refused the socket.
func (l *eventLoop) add(c *conn) (bool, error) {
	l.mu.Lock()
	l.lastID++
	id := l.lastID
	l.byID[id] = c
	l.mu.Unlock()
	c.pollID = id
	if l.poll == nil || c.raw == nil {
		return false, nil
	}
	if err := l.poll.add(c.raw, id); err != nil {
		return false, err
	}
	return true, nil
}

func (l *eventLoop) remove(c *conn) {
	l.mu.Lock()
	delete(l.byID, c.pollID)
	l.mu.Unlock()
}

func (l *eventLoop) run() {
	next := time.Now().Add(l.tick)
	polling := l.poll != nil
	for !l.stopped.Load() {
		wait := time.Until(next)
		if wait <= 0 {
			now := time.Now()
			l.sweep(now)
			next = now.Add(l.tick)
			continue
		}
		if polling {
			if _, err := l.poll.wait(int((wait+time.Millisecond-1)/time.Millisecond), l.readable); err != nil {
				// Not expected (the set and the buffer are the loop's
				// own); sessions parked on it wait for their heartbeat cut.
				l.srv.log.Error("poller failed", "err", err)
				polling = false
			}
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-l.stopCh:
		case <-t.C:
		}
		t.Stop()
	}
	if l.poll != nil {
		l.poll.close()
	}
}

// readable starts a reader for the session with id, unless one runs.
func (l *eventLoop) readable(id uint64) {
	l.mu.Lock()
	c := l.byID[id]
	l.mu.Unlock()
	if c != nil && c.reader.wake() {
		go c.readActive(nil)
	}
}

// sweep pings every session that has had no ping for an interval and
// cuts every polled session that has sent nothing for two. (A session
// with a reader goroutine is cut by its read deadline.)
func (l *eventLoop) sweep(now time.Time) {
	beat := l.srv.cfg.Heartbeat
	l.scratch = l.srv.appendConns(l.scratch)
	nowNS := now.UnixNano()
	for _, c := range l.scratch {
		if c.loop != l {
			continue // a session of the loop that follows this one
		}
		if now.Sub(c.lastPing) >= beat {
			c.lastPing = now
			c.sess.Send(ws.CompiledPing)
		}
		if c.polled && time.Duration(nowNS-c.lastRead.Load()) > 2*beat {
			c.silent()
		}
	}
	clear(l.scratch)
	l.scratch = l.scratch[:0]
}
