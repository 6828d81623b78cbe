package stream

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"

	gws "github.com/gobwas/ws"
	"github.com/tidings-io/tidings/session"
)

// KeyHeader is the response header of GET /v1/stream that carries the
// session's key, the path element of its POSTs.
const KeyHeader = "Tidings-Stream-Key"

// keyLen is the length of a key: 128 random bits in hex.
const keyLen = 32

// newKey returns a fresh session key: 128 bits from crypto/rand, in hex.
func newKey() string {
	var b [keyLen / 2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// replyFrame encodes a session reply (session.Transport.Reply) as a
// WebSocket text frame, as transport/ws does: JSON without HTML escaping,
// so that patterns such as "a.>" read as sent; a session.RawReply is sent
// as it is.
func replyFrame(v any) []byte {
	raw, ok := v.(session.RawReply)
	if !ok {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			// The reply types always marshal.
			panic("stream: encoding a reply: " + err.Error())
		}
		raw = bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
	}
	return gws.MustCompileFrame(gws.NewTextFrame(raw))
}

// closeFrame encodes the close frame that ends a stream.
func closeFrame(code uint16, reason string) []byte {
	return gws.MustCompileFrame(gws.NewCloseFrame(gws.NewCloseFrameBody(gws.StatusCode(code), reason)))
}

// pingFrame is the heartbeat: an empty ping frame.
var pingFrame = []byte{0x80 | byte(gws.OpPing), 0}
