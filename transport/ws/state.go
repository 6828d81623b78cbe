package ws

import "sync/atomic"

// readerState is the reader's part of a session. A polled session's
// reader is parked while its socket is quiet (no goroutine: the event
// loop watches the socket) and active while a goroutine reads what
// arrived; done is final. Only the named transitions below change it.
type readerState struct{ v atomic.Int32 }

const (
	readerParked int32 = iota
	readerActive
	readerDone
)

// begin makes a new session's reader active: no event may start another
// before the session decides how to read.
func (r *readerState) begin() { r.v.Store(readerActive) }

// park: the active reader leaves the socket to the event loop.
func (r *readerState) park() { r.v.Store(readerParked) }

// wake: the event loop starts a reader for a parked session. It reports
// whether the caller is to run it (false: a reader runs, or it is done).
func (r *readerState) wake() bool { return r.v.CompareAndSwap(readerParked, readerActive) }

// end: the active reader is done.
func (r *readerState) end() { r.v.Store(readerDone) }

// endParked: another goroutine ends a parked reader (no event will come
// for it). It reports whether the reader was parked.
func (r *readerState) endParked() bool { return r.v.CompareAndSwap(readerParked, readerDone) }

// writerState is the writer's part of a session: idle, or running (on a
// pooled writer's turn or a goroutine of the session's own). At most one
// writer runs.
type writerState struct{ running atomic.Bool }

// start makes the writer run; it reports whether the caller is to run it
// (false: it runs already).
func (w *writerState) start() bool { return w.running.CompareAndSwap(false, true) }

// stop: the running writer idles; a start may follow at once.
func (w *writerState) stop() { w.running.Store(false) }
