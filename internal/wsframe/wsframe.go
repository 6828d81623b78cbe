// Package wsframe reads WebSocket frames with a bound on their size, for
// the clients of the module (the Go client and the test client), with
// github.com/gobwas/ws.
package wsframe

import (
	"fmt"
	"io"

	"github.com/gobwas/ws"
)

// Read reads one whole frame from r: its header, then its payload,
// unmasked. A frame whose payload is over limit bytes is an error, and
// its payload is left unread.
func Read(r io.Reader, limit int64) (ws.Header, []byte, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return h, nil, err
	}
	if h.Length > limit {
		return h, nil, fmt.Errorf("a frame of %d bytes, over %d", h.Length, limit)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return h, nil, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	return h, p, nil
}
