package ws

import (
	"compress/flate"
	"errors"
	"io"
	"sync"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/tidings-io/tidings/session"
)

// Inbound permessage-deflate (RFC 7692 section 7.2.2). A compressed
// message (RSV1 on its first frame) is reassembled compressed, as any
// message, then inflated whole into a buffer that never grows past the
// message limit plus one byte: the limit applies to the inflated size,
// and a small message that would inflate past it (a decompression bomb)
// closes the session with 1009 once the limit is passed, having cost at
// most the limit in memory and the CPU to produce it. Invalid deflate
// data closes with 1007.

// Errors of inflate.
var (
	// errInflateTooBig: the message inflates to more than the limit.
	errInflateTooBig = errors.New("ws: inflated message over the limit")
	// errInflateInvalid: the compressed payload is not valid deflate
	// data, or does not end where a message must.
	errInflateInvalid = errors.New("ws: invalid deflate data")
)

// deflateTail follows a message's compressed payload into the inflater:
// the 4 bytes RFC 7692 says to append (they complete the empty stored
// block a sender ends each message with and removes), then an empty
// final stored block, so that a whole message ends the deflate stream
// with io.EOF and a payload cut inside a block is an error.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// minInflateBuffer is the least an inflate output buffer grows to.
const minInflateBuffer = 512

// inflateSource is a message's compressed payload followed by
// deflateTail, read as compress/flate wants it: a byte reader, which it
// does not wrap in a bufio.Reader of its own.
type inflateSource struct{ p, tail []byte }

func (s *inflateSource) next() bool {
	if len(s.p) == 0 {
		s.p, s.tail = s.tail, nil
	}
	return len(s.p) > 0
}

func (s *inflateSource) Read(b []byte) (int, error) {
	if !s.next() {
		return 0, io.EOF
	}
	n := copy(b, s.p)
	s.p = s.p[n:]
	return n, nil
}

func (s *inflateSource) ReadByte() (byte, error) {
	if !s.next() {
		return 0, io.EOF
	}
	b := s.p[0]
	s.p = s.p[1:]
	return b, nil
}

// inflateReader is a pooled decompressor and its source.
type inflateReader struct {
	src inflateSource
	fr  io.ReadCloser // a flate.Resetter
}

// inflateReaders holds decompressors (about 40 KiB each) between
// messages: a session holds none while it is idle.
var inflateReaders = sync.Pool{New: func() any {
	r := new(inflateReader)
	r.fr = flate.NewReader(&r.src)
	return r
}}

// inflate appends to dst the inflation of p, the compressed payload of
// one message, whose back-references may reach into dict (what the
// previous messages inflated to, under client context takeover; nil
// otherwise). It produces at most limit bytes: one more stops it with
// errInflateTooBig, so dst grows by at most limit+1 bytes whatever p
// inflates to. Data that is not a valid message returns
// errInflateInvalid.
func inflate(dst, p, dict []byte, limit int) ([]byte, error) {
	r := inflateReaders.Get().(*inflateReader)
	defer inflateReaders.Put(r)
	r.src = inflateSource{p: p, tail: deflateTail}
	if err := r.fr.(flate.Resetter).Reset(&r.src, dict); err != nil {
		return dst, errInflateInvalid
	}
	start := len(dst)
	for {
		if len(dst) == cap(dst) {
			// Grow to twice the output so far (at first, twice the
			// input), never past limit+1.
			room := min(max(len(dst)-start, 2*len(p), minInflateBuffer), limit+1-(len(dst)-start))
			g := make([]byte, len(dst), len(dst)+room)
			copy(g, dst)
			dst = g
		}
		n, err := r.fr.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if len(dst)-start > limit {
			return dst, errInflateTooBig
		}
		switch {
		case err == io.EOF:
			return dst, nil
		case err != nil:
			return dst, errInflateInvalid
		}
	}
}

// inflater is the inflate state of a session that negotiated
// permessage-deflate; the reader alone uses it.
type inflater struct {
	// window is how far back the client's next message may refer into
	// what the previous ones inflated to: the client's LZ77 window when
	// it may use context takeover, 0 when it said it will not.
	window int
	// dict is the last window bytes the session inflated (takeover).
	dict []byte
	// compressed is set while a message whose first frame had RSV1 is
	// read.
	compressed bool
}

// errRsv23 refuses RSV2 and RSV3, which permessage-deflate leaves
// undefined.
var errRsv23 = ws.ProtocolError("rsv2 or rsv3 set: no extension defines them")

// header applies RFC 7692's rules to the RSV bits of a frame of a session
// that negotiated permessage-deflate (ws.CheckHeader lets any through):
// RSV1 marks a compressed message on its first frame only, never on a
// control frame or a continuation; RSV2 and RSV3 mean nothing. A text
// frame starts a message, compressed or not.
func (f *inflater) header(h ws.Header) error {
	if h.Rsv&^ws.Rsv(true, false, false) != 0 {
		return errRsv23
	}
	_, rsv1, err := wsflate.UnsetBit(h)
	if err != nil {
		return err
	}
	if h.OpCode == ws.OpText {
		f.compressed = rsv1
	}
	return nil
}

// deflateSlack is what compressing may add to a message: deflate's
// stored blocks (5 bytes per block, at least one per 16 KiB in the
// encoders browsers use), plus a margin.
func deflateSlack(limit int64) int64 { return limit/(16<<10)*5 + 64 }

// msgLimit is the most the payloads of the message being read may add
// up to on the wire: the message limit, and for a compressed message
// what deflate may add to it (the inflated size is held to the limit).
func (c *conn) msgLimit() int64 {
	limit := c.srv.maxMessage.Load()
	if c.flate != nil && c.flate.compressed {
		limit += deflateSlack(limit)
	}
	return limit
}

// inflateMessage inflates the message in msg when it is compressed and
// returns the message to handle. It reports false, having closed the
// session (1009 over the limit, 1007 for invalid data), when it fails.
func (c *conn) inflateMessage(msg []byte) ([]byte, bool) {
	f := c.flate
	if f == nil || !f.compressed {
		return msg, true
	}
	f.compressed = false
	out, err := inflate(nil, msg, f.dict, int(c.srv.maxMessage.Load()))
	switch {
	case errors.Is(err, errInflateTooBig):
		c.fail(session.CauseTooBig, "")
		return nil, false
	case err != nil:
		c.fail(session.CauseInvalidPayload, "invalid compressed data")
		return nil, false
	}
	c.srv.compression.windows.Add(int64(f.remember(out)))
	return out, true
}

// remember keeps, for a client that may use context takeover, the last
// window bytes of what it inflated before out and out itself, and
// returns by how much the bytes it holds grew.
func (f *inflater) remember(out []byte) int {
	if f.window == 0 {
		return 0
	}
	before := cap(f.dict)
	if len(out) >= f.window {
		if cap(f.dict) < f.window {
			f.dict = make([]byte, 0, f.window)
		}
		f.dict = append(f.dict[:0], out[len(out)-f.window:]...)
		return cap(f.dict) - before
	}
	if keep := f.window - len(out); len(f.dict) > keep {
		f.dict = f.dict[:copy(f.dict, f.dict[len(f.dict)-keep:])]
	}
	if need := len(f.dict) + len(out); need > cap(f.dict) {
		g := make([]byte, len(f.dict), min(f.window, max(2*need, minInflateBuffer)))
		copy(g, f.dict)
		f.dict = g
	}
	f.dict = append(f.dict, out...)
	return cap(f.dict) - before
}

// release gives back what the inflate state holds, and returns how many
// window bytes that was.
func (f *inflater) release() int {
	n := cap(f.dict)
	f.dict = nil
	return n
}
