package ws

import (
	"bytes"
	"compress/flate"
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
)

// Outbound permessage-deflate (RFC 7692 section 7.2.1). The server never
// uses context takeover, so a compressed frame depends on its message
// alone: the broker encodes a message once per encoding, and the frame a
// DeflateEncoder builds is shared by every compressing subscriber of the
// node, as the plain frame is by the others.

// DefaultCompressionMinSize is Config.CompressionMinSize's default.
const DefaultCompressionMinSize = 256

// deflateLevel is compress/flate's default level. On the price feed of
// BenchmarkDeliverCompressed it sends about 3.5% fewer bytes than
// flate.BestSpeed (423 against 439 per delivery) for about 9 µs more CPU
// per message (32 against 22 µs, with the caches a fan-out leaves): CPU
// spent once per message per node, bytes saved once per subscriber.
const deflateLevel = flate.DefaultCompression

// rsv1 is the Per-Message Compressed bit of a frame's first byte.
const rsv1 = 0x40

// DeflateEncoder is the broker.Encoder of the sessions that negotiated
// permessage-deflate: it builds the frames Encoder builds, with each
// payload of at least its minimum size deflated and RSV1 set, the
// trailing 0x00 0x00 0xff 0xff removed (RFC 7692 section 7.2.1). A
// payload below the minimum, or one that deflate does not make smaller,
// goes as Encoder builds it. It is safe for concurrent use.
type DeflateEncoder struct {
	minSize int
	// compressed counts the frames compressed; in and out sum their
	// payloads before and after, and saved the difference (counted apart
	// so that it only grows, whenever it is read).
	compressed, in, out, saved atomic.Uint64
}

var _ broker.Encoder = (*DeflateEncoder)(nil)

// NewDeflateEncoder returns an encoder that compresses payloads of at
// least minSize bytes (DefaultCompressionMinSize when minSize is zero or
// negative).
func NewDeflateEncoder(minSize int) *DeflateEncoder {
	if minSize <= 0 {
		minSize = DefaultCompressionMinSize
	}
	return &DeflateEncoder{minSize: minSize}
}

// Message encodes a `message` frame, compressed.
func (d *DeflateEncoder) Message(m *broker.Message, sub string) []byte {
	return d.compress(Encoder{}.Message(m, sub))
}

// MessageShared returns nil: compressed frames share no bytes, so the
// broker encodes each wildcard pattern's frame whole with Message.
func (d *DeflateEncoder) MessageShared(*broker.Message) []byte { return nil }

// MessageEnds is Encoder's: the broker does not call it, since
// MessageShared returns nil, and the frame it completes is not
// compressed.
func (d *DeflateEncoder) MessageEnds(shared []byte, sub string) (head, tail []byte) {
	return Encoder{}.MessageEnds(shared, sub)
}

// Subscribed encodes a `subscribed` frame, compressed.
func (d *DeflateEncoder) Subscribed(ref, topic string, pos *broker.Position, recovered bool) []byte {
	return d.compress(Encoder{}.Subscribed(ref, topic, pos, recovered))
}

// Reset encodes a `reset` frame, compressed.
func (d *DeflateEncoder) Reset(topic, sub string, pos broker.Position, reason string) []byte {
	return d.compress(Encoder{}.Reset(topic, sub, pos, reason))
}

// Event encodes a join or leave frame, compressed.
func (d *DeflateEncoder) Event(v any) []byte { return d.compress(jsonFrame(v)) }

// deflater is a pooled compressor and its output buffer.
type deflater struct {
	w   *flate.Writer
	buf bytes.Buffer
}

// deflaters holds compressors between frames: compress/flate's are large
// (about 1 MB at deflateLevel) and costly to make.
var deflaters = sync.Pool{New: func() any {
	d := new(deflater)
	d.w, _ = flate.NewWriter(&d.buf, deflateLevel) // no error: the level is valid
	return d
}}

// maxPooledDeflateBuffer is the largest output buffer a pooled deflater
// keeps.
const maxPooledDeflateBuffer = 64 << 10

// compress returns plain, an unmasked final text frame as Encoder
// builds it, with its payload deflated and RSV1 set when the payload has
// at least minSize bytes and deflating makes it smaller; else plain.
func (d *DeflateEncoder) compress(plain []byte) []byte {
	payload := plain[headerLen(plain[1]):]
	if len(payload) < d.minSize {
		return plain
	}
	z := deflaters.Get().(*deflater)
	defer func() {
		if z.buf.Cap() > maxPooledDeflateBuffer {
			z.buf = bytes.Buffer{}
		}
		deflaters.Put(z)
	}()
	z.buf.Reset()
	z.w.Reset(&z.buf)
	// Writes to a bytes.Buffer do not fail.
	_, _ = z.w.Write(payload)
	_ = z.w.Flush()
	// A sync flush ends with an empty stored block: 0x00 0x00 0xff 0xff
	// after its 3 header bits, which RFC 7692 removes.
	out := bytes.TrimSuffix(z.buf.Bytes(), []byte{0x00, 0x00, 0xff, 0xff})
	if len(out) >= len(payload) {
		return plain
	}
	b := make([]byte, headroom, headroom+len(out))
	f := frame(ws.OpText, append(b, out...))
	f[0] |= rsv1
	d.compressed.Add(1)
	d.in.Add(uint64(len(payload)))
	d.out.Add(uint64(len(out)))
	d.saved.Add(uint64(len(payload) - len(out)))
	return f
}

// CompressionStats counts what a server compressed.
type CompressionStats struct {
	// Frames counts the frames compressed: a message's frame once per
	// node (once per pattern for deliveries through wildcard
	// subscriptions), whatever the number of its subscribers, and each
	// frame built for one session alone (its replies, the messages a
	// resume replays to it).
	Frames uint64
	// In and Out sum those frames' payloads, before and after; Saved is
	// In less Out.
	In, Out, Saved uint64
	// InflateWindowBytes is what the sessions' inflate windows hold now:
	// for clients that use context takeover, the last window (32 KiB at
	// most) of what each inflated.
	InflateWindowBytes int64
}

// compression is a server's permessage-deflate, when Config.Compression
// is on.
type compression struct {
	enc      *DeflateEncoder
	encoding broker.Encoding // enc's, in the server's broker
	// windows is what the sessions' inflate windows hold, in bytes.
	windows atomic.Int64
}

// newCompression registers a DeflateEncoder with b.
func newCompression(b *broker.Broker, minSize int) *compression {
	enc := NewDeflateEncoder(minSize)
	return &compression{enc: enc, encoding: b.AddEncoder(enc)}
}

// CompressionStats returns what the server compressed so far (zero when
// Config.Compression is off).
func (s *Server) CompressionStats() CompressionStats {
	z := s.compression
	if z == nil {
		return CompressionStats{}
	}
	st := z.enc.Stats()
	st.InflateWindowBytes = z.windows.Load()
	return st
}

// Stats returns what the encoder compressed so far (InflateWindowBytes
// is the server's: zero here).
func (d *DeflateEncoder) Stats() CompressionStats {
	return CompressionStats{
		Frames: d.compressed.Load(),
		In:     d.in.Load(),
		Out:    d.out.Load(),
		Saved:  d.saved.Load(),
	}
}

// replyFrame encodes a reply of c's own as a text frame, compressed when
// the session negotiated compression.
func (c *conn) replyFrame(reply any) []byte {
	f := jsonFrame(reply)
	if c.flate != nil {
		f = c.srv.compression.enc.compress(f)
	}
	return f
}
