package ws

import (
	"errors"
	"net"
	"os"
	"slices"
	"time"

	"github.com/tidings-io/tidings/session"
)

// maxIdleBuffer is the largest frame slice a writer keeps between bursts;
// a larger one is dropped so idle sessions stay small.
const maxIdleBuffer = 64

// maxTurnBytes bounds what a pooled writer writes for one session in one
// turn. A session with more queued (a consumer that reads slowly, or not
// at all, while its socket's send buffer still takes bytes) keeps the
// rest of its batch and queues again as a backlog (see writeQueue), so
// that copying megabytes into some sockets delays a session that keeps
// up by one such turn at a time.
const maxTurnBytes = 64 << 10

// wake starts the writer unless it runs. The outbox calls it when a push
// finds it empty; requestClose calls it too.
func (c *conn) wake() {
	if c.writer.start() {
		c.schedule()
	}
}

// schedule hands the running writer to the event loop's writer pool, or
// to a goroutine of its own when the socket cannot be written without
// waiting (TLS).
func (c *conn) schedule() {
	if c.raw != nil && c.loop != nil {
		c.loop.writeq.push(c)
		return
	}
	go c.writeAll()
}

// turn is one turn of a pooled writer for the session: it writes what is
// queued (at most maxTurnBytes of it) with one writev that does not wait
// and, when more is left or came meanwhile, queues again: under load
// every session waits its turn while its frames gather, so the busier the
// broker, the more frames per writev. Whatever
// may wait (a full socket, a close) continues on a goroutine of the
// session's own, so that no session holds up the pool.
func (c *conn) turn() {
	out := c.sess.Outbox()
	if c.closing() {
		go c.writeAll()
		return
	}
	var overflowed bool
	if len(c.carry) == 0 {
		var frames [][]byte
		frames, c.oldest, overflowed = out.DrainOldest(c.spare)
		// The outbox now fills the old spare: keep the drained slice as
		// the next one, even empty, never the slice the outbox holds.
		c.spare = frames
		if !overflowed && len(frames) == 0 {
			c.idle(false)
			return
		}
		c.carry, c.batch = frames, len(frames)
	} else {
		overflowed = out.Overflowed()
	}
	if overflowed {
		c.requestClose(session.CauseSlowConsumer, "")
		go c.writeAll()
		return
	}
	now, more := splitBytes(c.carry, maxTurnBytes)
	c.carry = more
	rest, err := c.writeNoWait(now)
	if err != nil {
		c.writeFailed(err)
		return
	}
	if len(rest) > 0 {
		go c.writeRest(rest)
		return
	}
	c.turnDone()
}

// turnDone ends a turn whose writes went through: the session queues
// again as a backlog with what is left of its batch, or its batch is
// counted and the writer idles.
func (c *conn) turnDone() {
	if len(c.carry) > 0 {
		c.loop.writeq.pushBacklog(c)
		return
	}
	c.srv.tel.written(c.ctx, c.batch, c.oldest)
	c.idle(false)
}

// writeRest finishes a turn the socket could not take at once, waiting
// under the write timeout, then hands the session back to the pool.
func (c *conn) writeRest(rest [][]byte) {
	if err := c.writeWaiting(rest); err != nil {
		c.writeFailed(err)
		return
	}
	c.turnDone()
}

// idle ends the writer's run, unless a push or a close request came
// after its last drain (it found the writer running): then the writer
// runs again, on this goroutine when own, else through schedule. It
// reports whether the caller should go on writing.
func (c *conn) idle(own bool) bool {
	clear(c.spare) // written: an idle session must not pin its last frames
	if cap(c.spare) > maxIdleBuffer {
		c.spare = nil
	}
	c.writer.stop()
	if (!c.sess.Outbox().Pending() && !c.closing()) || !c.writer.start() {
		return false
	}
	if own {
		return true
	}
	c.schedule()
	return false
}

// writeAll drains the outbox in batches, one writev each, until it is
// empty, or carries out the close and ends the writer's part. It runs on
// a goroutine of the session's own: it may wait on a full socket or for
// the peer's close reply.
func (c *conn) writeAll() {
	out := c.sess.Outbox()
	for {
		if c.closing() {
			c.finish()
			c.endParked(nil)
			c.partEnded()
			return
		}
		frames, oldest, overflowed := out.DrainOldest(c.spare)
		c.spare = frames // as in turn
		if overflowed {
			c.requestClose(session.CauseSlowConsumer, "")
			continue
		}
		if len(frames) == 0 {
			if !c.idle(true) {
				return
			}
			continue
		}
		if err := c.write(frames); err != nil {
			c.writeFailed(err)
			return
		}
		c.srv.tel.written(c.ctx, len(frames), oldest)
	}
}

// writeFailed ends the writer after a failed write: the connection is
// closed and a parked reader ended. A queue that overflowed meanwhile
// makes the session a slow consumer (whose close frame cannot be sent);
// otherwise the connection dropped, which is not counted as a close the
// peer sent (tidings_close_received_total): no read found it.
func (c *conn) writeFailed(err error) {
	if c.sess.Outbox().Overflowed() {
		c.requestClose(session.CauseSlowConsumer, "")
		c.logger().Warn("slow consumer", "err", err)
	} else {
		c.requestClose(session.CauseDropped, "")
		c.logger().Debug("write failed", "err", err)
	}
	_ = c.nc.Close()
	c.endParked(nil)
	c.partEnded()
}

// write sends frames with one writev. It waits only when the socket is
// full: then under the write timeout.
func (c *conn) write(frames [][]byte) error {
	rest, err := c.writeNoWait(frames)
	if err != nil || len(rest) == 0 {
		return err
	}
	return c.writeWaiting(rest)
}

// writeNoWait writes what the socket takes at once (nothing when it has
// no descriptor to write to without waiting: TLS) and returns the rest.
func (c *conn) writeNoWait(frames [][]byte) (rest [][]byte, err error) {
	if c.raw == nil || len(frames) == 0 {
		return frames, nil
	}
	n, err := c.rawW.writeNow(c.raw, frames)
	c.srv.tel.bytesOut.Add(uint64(n))
	if err != nil {
		return nil, err
	}
	return skipBytes(frames, n), nil
}

// writeWaiting writes frames through the connection, waiting for the
// socket. The write timeout bounds each wait in which the peer reads
// nothing, not the whole batch: a peer that keeps reading is not cut for
// taking long over a large backlog (the bounded outbox deals with one
// that cannot keep up: an overflow ends the wait at the next timeout).
// The peer's progress is what it acknowledged from the socket's queue,
// since the kernel wakes a waiting writer only once a good part of a large
// send buffer is free. A TLS connection cannot go on after a timed-out
// write, so there the timeout bounds the batch.
func (c *conn) writeWaiting(frames [][]byte) error {
	nb := net.Buffers(frames)
	for {
		queued, known := 0, false
		if c.raw != nil {
			queued, known = unacked(c.raw)
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		// WriteTo leaves in nb what it did not write.
		n, err := nb.WriteTo(c.nc)
		c.srv.tel.bytesOut.Add(uint64(n))
		if err == nil {
			// The deadline must not outlive the wait: the writes that do
			// not wait (rawWriter.writeNow) would meet it once it has passed.
			_ = c.nc.SetWriteDeadline(time.Time{})
			return nil
		}
		if c.raw == nil || !errors.Is(err, os.ErrDeadlineExceeded) || c.sess.Outbox().Overflowed() {
			return err
		}
		if n == 0 {
			if now, ok := unacked(c.raw); !known || !ok || now >= queued {
				return err // the peer read nothing for a whole timeout
			}
		}
	}
}

// splitBytes splits frames after the part that takes the total past
// limit bytes (at least one part): the parts to write now and the rest.
// The first may share its array with frames, the rest does not.
func splitBytes(frames [][]byte, limit int) (now, rest [][]byte) {
	n := 0
	for i, f := range frames {
		n += len(f)
		if n >= limit && i+1 < len(frames) {
			return frames[: i+1 : i+1], slices.Clone(frames[i+1:])
		}
	}
	return frames, nil
}

// skipBytes drops the first n bytes of frames, changing only frames' own
// slice headers (the frames' bytes are shared by every subscriber).
func skipBytes(frames [][]byte, n int) [][]byte {
	for len(frames) > 0 && n >= len(frames[0]) {
		n -= len(frames[0])
		frames = frames[1:]
	}
	if len(frames) > 0 && n > 0 {
		frames[0] = frames[0][n:]
	}
	return frames
}
