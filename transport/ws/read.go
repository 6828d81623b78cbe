package ws

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/session"
)

// How a session reads. A reader takes whatever bytes the socket has, up
// to a pooled buffer's worth, and handles the frames in them where they
// lie. A frame cut by the end of what arrived is not waited for: its
// header bytes, or its payload so far, are kept in the session (the
// payload in the message buffer, grown only as bytes arrive), and the
// reader parks; the poller starts a reader again when more bytes come.
// A client that declares a large frame and sends a little of it
// therefore makes the node hold what it sent and a partialFrame record,
// and no goroutine: the message buffer holds at most twice the bytes
// read (at least minMessageBuffer), or those plus the bytes already
// waiting in the socket's queue. A session that stops in the middle of
// a frame is silent, and cut as such two heartbeat intervals after its
// last byte (see eventLoop.sweep; a reader goroutine's read deadline is
// the same).

// readBufferSize is the size of the pooled read buffers a reader holds
// only while it reads.
const readBufferSize = 4096

// minMessageBuffer is the smallest message buffer a frame split across
// reads grows to.
const minMessageBuffer = 512

// readBuffer is an active reader's buffer, from readBuffers; a polled
// session holds one only while it reads.
type readBuffer struct {
	buf [readBufferSize]byte
	// The read that does not wait (readNow): its destination and result,
	// and its callback for syscall.RawConn.Read, bound once so that a
	// read allocates nothing.
	dst    []byte
	n      int
	err    error
	readFd func(fd uintptr) bool
	// queued's callback, bound once too.
	inqFd func(fd uintptr)
}

// readBuffers holds the read buffers of active readers.
var readBuffers = sync.Pool{New: func() any {
	rb := new(readBuffer)
	rb.readFd = rb.readFromFd
	rb.inqFd = rb.inqFromFd
	return rb
}}

// errWouldBlock is readNow's answer when the socket has nothing to read.
var errWouldBlock = errors.New("ws: no bytes to read")

// partialFrame is a frame whose bytes came in more than one read, kept
// by the session between reads (and while its reader is parked).
type partialFrame struct {
	head  [ws.MaxHeaderSize]byte // the header's bytes, until it is whole
	nhead int                    // how many of head arrived
	whole bool                   // the header is whole: h holds it
	h     ws.Header
	got   int64 // the payload bytes that arrived
	// bound is the most a data frame's payload may grow the message
	// buffer to (see grown).
	bound int
	ctl   [ws.MaxControlFramePayloadSize]byte // a control frame's payload
}

// readAll is the reader of a session that is not polled: it reads until
// the session ends, each read waiting at most two heartbeat intervals.
// buffered holds the bytes that came with the upgrade request.
func (c *conn) readAll(buffered *bufio.Reader) {
	if !c.readBuffered(buffered) {
		rb := readBuffers.Get().(*readBuffer)
		c.read(rb, true) // returns when the reader is done
		readBuffers.Put(rb)
	}
	c.reader.end()
	c.readerEnded()
}

// readActive is the reader of a polled session while its socket has
// bytes: it reads and handles what is there without waiting, then parks
// and re-arms the socket. buffered, when not nil, holds the bytes that
// came with the upgrade request: it reads those only.
func (c *conn) readActive(buffered *bufio.Reader) {
	var done bool
	if buffered != nil {
		done = c.readBuffered(buffered)
	} else {
		rb := readBuffers.Get().(*readBuffer)
		done = c.read(rb, false)
		readBuffers.Put(rb)
	}
	if done {
		c.reader.end()
		c.readerEnded()
		return
	}
	if cap(c.msg) > maxIdleBuffer && !c.msgPending() {
		c.msg = nil
	}
	c.park()
}

// msgPending reports whether the message buffer holds part of a message:
// fragments before the last, or a data frame's payload so far.
func (c *conn) msgPending() bool {
	if c.wsState.Is(ws.StateFragmented) {
		return true
	}
	f := c.part
	return f != nil && f.whole && !f.h.OpCode.IsControl()
}

// readBuffered handles the bytes br holds (those that came with the
// upgrade request), without reading more. It reports whether the reader
// is done.
func (c *conn) readBuffered(br *bufio.Reader) (done bool) {
	n := br.Buffered()
	if n == 0 {
		return false
	}
	defer c.recoverFault(&done)
	p, _ := br.Peek(n)
	c.arrived(n)
	done = c.consume(p)
	_, _ = br.Discard(n)
	return done
}

// read reads from the socket and handles what arrives until the reader
// is done (true) or, when it must not wait (a polled session), until the
// socket has nothing more for now (false). A read waits, when wait is
// set, at most two heartbeat intervals.
func (c *conn) read(rb *readBuffer, wait bool) (done bool) {
	defer c.recoverFault(&done)
	for {
		dst, direct := c.readTarget(rb)
		var (
			n   int
			err error
		)
		if wait {
			_ = c.nc.SetReadDeadline(time.Now().Add(2 * c.srv.cfg.Heartbeat))
			n, err = c.nc.Read(dst)
		} else {
			n, err = rb.readNow(c.raw, dst)
		}
		if n > 0 {
			c.arrived(n)
			if direct {
				done = c.payloadRead(n)
			} else {
				done = c.consume(dst[:n])
			}
			if done {
				return true
			}
		}
		switch {
		case errors.Is(err, errWouldBlock):
			return false
		case err != nil:
			if errors.Is(err, io.EOF) && c.part != nil {
				err = io.ErrUnexpectedEOF
			}
			c.readFailed(err)
			return true
		case !wait && n < len(dst):
			// The socket had no more: park. Bytes that come meanwhile
			// fire the re-armed socket at once.
			return false
		}
	}
}

// arrived accounts for n bytes read from the client.
func (c *conn) arrived(n int) {
	c.lastRead.Store(time.Now().UnixNano())
	c.srv.tel.bytesIn.Add(uint64(n))
}

// recoverFault, deferred by a reader, turns a panic in the session's
// code into a close with 1011.
func (c *conn) recoverFault(done *bool) {
	if r := recover(); r != nil {
		c.logger().Error("session fault", "panic", fmt.Sprint(r))
		c.fail(session.CauseInternal, "")
		*done = true
	}
}

// readTarget is where the next read goes: into the message buffer's
// spare room when a data frame's payload is under way and there is room
// for a read buffer's worth of it, else into the read buffer. The room is
// made only for bytes that arrived (see grown): those read and, when the
// socket can tell, those already queued in it, which one read then takes
// whole.
func (c *conn) readTarget(rb *readBuffer) (dst []byte, direct bool) {
	f := c.part
	if f == nil || !f.whole || f.h.OpCode.IsControl() {
		return rb.buf[:], false
	}
	rest := f.h.Length - f.got
	room := int64(cap(c.msg) - len(c.msg))
	if room < readBufferSize && rest >= readBufferSize && c.raw != nil {
		if queued, ok := rb.queued(c.raw); ok && queued >= readBufferSize {
			c.msg = grown(c.msg, len(c.msg)+int(min(int64(queued), rest)), f.bound)
			room = int64(cap(c.msg) - len(c.msg))
		}
	}
	if room = min(room, rest); room >= readBufferSize {
		return c.msg[len(c.msg) : len(c.msg)+int(room)], true
	}
	return rb.buf[:], false
}

// payloadRead takes the n bytes a read put in the message buffer's spare
// room (readTarget), which belong to the frame under way.
func (c *conn) payloadRead(n int) bool {
	f := c.part
	p := c.msg[len(c.msg) : len(c.msg)+n]
	ws.Cipher(p, f.h.Mask, int(f.got))
	c.msg = c.msg[:len(c.msg)+n]
	f.got += int64(n)
	if f.got < f.h.Length {
		return false
	}
	c.part = nil
	return c.dataEnd(f.h)
}

// consume handles the frames in p, the bytes a read brought, and keeps
// what ends in the middle of a frame. It reports whether the reader is
// done: after the peer's close frame, a violation, or a fault.
func (c *conn) consume(p []byte) bool {
	for len(p) > 0 {
		if c.part == nil {
			// The common case: a whole frame in p, handled where it lies.
			if len(p) >= 2 {
				if hl := headerLen(p[1]); len(p) >= hl {
					h, err := parseHeader(p[:hl])
					if c.header(h, err) {
						return true
					}
					p = p[hl:]
					if h.Length <= int64(len(p)) {
						payload := p[:h.Length]
						p = p[h.Length:]
						if c.frame(h, payload) {
							return true
						}
						continue
					}
					c.part = &partialFrame{whole: true, h: h, bound: c.growBound(h)}
				}
			}
			if c.part == nil {
				c.part = &partialFrame{}
			}
		}
		n, done := c.more(c.part, p)
		if done {
			return true
		}
		p = p[n:]
	}
	return false
}

// more feeds p to the split frame f, and handles the frame if p
// completes it. It returns how many bytes of p it took (all of them but
// those of the frames after f), and whether the reader is done.
func (c *conn) more(f *partialFrame, p []byte) (int, bool) {
	n := 0
	if !f.whole {
		if f.nhead < 2 {
			k := copy(f.head[f.nhead:2], p)
			f.nhead += k
			n += k
			if f.nhead < 2 {
				return n, false
			}
		}
		hl := headerLen(f.head[1])
		k := copy(f.head[f.nhead:hl], p[n:])
		f.nhead += k
		n += k
		if f.nhead < hl {
			return n, false
		}
		h, err := parseHeader(f.head[:hl])
		if c.header(h, err) {
			return n, true
		}
		f.h, f.whole = h, true
		f.bound = c.growBound(h)
		if h.Length == 0 {
			c.part = nil
			return n, c.frame(h, nil)
		}
	}
	chunk := p[n:]
	if rest := f.h.Length - f.got; int64(len(chunk)) > rest {
		chunk = chunk[:rest]
	}
	ws.Cipher(chunk, f.h.Mask, int(f.got))
	if f.h.OpCode.IsControl() {
		copy(f.ctl[f.got:], chunk)
	} else {
		c.msg = append(grown(c.msg, len(c.msg)+len(chunk), f.bound), chunk...)
	}
	f.got += int64(len(chunk))
	n += len(chunk)
	if f.got < f.h.Length {
		return n, false
	}
	c.part = nil
	if f.h.OpCode.IsControl() {
		return n, c.control(f.h.OpCode, f.ctl[:f.got])
	}
	return n, c.dataEnd(f.h)
}

// grown returns buf with room for need bytes, which have arrived (or,
// for a read into the room, wait in the socket). When buf has too little,
// it grows to the next power of two of need, at least minMessageBuffer,
// at most bound: a buffer holds at most about twice what arrived,
// however large a frame's header says it is, and a message that arrives
// in many pieces is copied a few times in all, not once per piece.
func grown(buf []byte, need, bound int) []byte {
	if need <= cap(buf) {
		return buf
	}
	size := max(need, min(bound, max(minMessageBuffer, 1<<bits.Len(uint(need-1)))))
	g := make([]byte, len(buf), size)
	copy(g, buf)
	return g
}

// growBound is how large the message buffer may grow for the payload of
// a data frame with header h, checked against the limits: the message's
// length with this frame when the frame ends the message, else the
// largest message (more fragments may follow, and doubling needs room).
func (c *conn) growBound(h ws.Header) int {
	if h.Fin {
		return len(c.msg) + int(h.Length)
	}
	return int(c.msgLimit())
}

// header checks a frame's header against the protocol and the limits
// before any of its payload is taken. It reports whether the reader is
// done (the session failed).
func (c *conn) header(h ws.Header, err error) bool {
	if err != nil {
		c.fail(session.CauseProtocolError, err.Error())
		return true
	}
	if err := ws.CheckHeader(h, c.wsState); err != nil {
		c.fail(session.CauseProtocolError, err.Error())
		return true
	}
	if c.flate != nil {
		if err := c.flate.header(h); err != nil {
			c.fail(session.CauseProtocolError, err.Error())
			return true
		}
	}
	if h.OpCode.IsControl() {
		return false
	}
	if h.OpCode == ws.OpBinary {
		c.fail(session.CauseUnsupportedData, "")
		return true
	}
	if h.OpCode == ws.OpText {
		c.msg = c.msg[:0]
	}
	if h.Length > c.msgLimit()-int64(len(c.msg)) {
		c.fail(session.CauseTooBig, "")
		return true
	}
	return false
}

// frame handles a frame whose payload p (masked) arrived with its
// header. A message of one frame is handled where it lies; a fragment
// joins the message buffer. It reports whether the reader is done.
func (c *conn) frame(h ws.Header, p []byte) bool {
	ws.Cipher(p, h.Mask, 0)
	if h.OpCode.IsControl() {
		return c.control(h.OpCode, p)
	}
	if h.Fin && len(c.msg) == 0 {
		c.wsState = c.wsState.Clear(ws.StateFragmented)
		return c.message(p)
	}
	c.msg = append(c.msg, p...)
	return c.dataEnd(h)
}

// dataEnd ends a text or continuation frame whose payload is in the
// message buffer: the message waits for its next fragment, or is
// handled. It reports whether the reader is done.
func (c *conn) dataEnd(h ws.Header) bool {
	if !h.Fin {
		c.wsState = c.wsState.Set(ws.StateFragmented)
		return false
	}
	c.wsState = c.wsState.Clear(ws.StateFragmented)
	msg := c.msg
	if cap(c.msg) > maxMessageBuffer {
		c.msg = nil // handle does not keep msg: the next message needs a buffer
	}
	return c.message(msg)
}

// message handles a whole message, inflated first when compressed. It
// reports whether the reader is done.
func (c *conn) message(msg []byte) bool {
	msg, ok := c.inflateMessage(msg)
	if !ok {
		return true
	}
	if !utf8.Valid(msg) {
		c.fail(session.CauseInvalidPayload, "")
		return true
	}
	if !c.closing() {
		return c.handle(msg)
	}
	return false
}

// park leaves the reader to the event loop until the socket has bytes.
func (c *conn) park() {
	c.reader.park()
	if err := c.loop.poll.rearm(c.raw, c.pollID); err != nil {
		// The connection was closed meanwhile: no event will come.
		c.endParked(nil)
	}
}

// control handles a ping, pong or close frame. It reports whether the
// reader is done.
func (c *conn) control(op ws.OpCode, p []byte) bool {
	switch op {
	case ws.OpPing:
		// Over the rate a ping is not answered; abuse closes.
		answer, closed := c.session.AllowPing()
		if closed {
			c.discardInput()
			return true
		}
		if answer {
			c.sess.Send(ws.MustCompileFrame(ws.NewPongFrame(slices.Clone(p))))
		}
	case ws.OpClose:
		return c.peerClosed(p)
	}
	return false
}
