package ws

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// headerLen is the length of a frame header whose second byte is b1.
func headerLen(b1 byte) int {
	n := 2
	if b1&0x80 != 0 {
		n += 4 // the mask
	}
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	return n
}

// parseHeader decodes a whole frame header (headerLen bytes), as
// ws.ReadHeader does.
func parseHeader(p []byte) (ws.Header, error) {
	h := ws.Header{
		Fin:    p[0]&0x80 != 0,
		Rsv:    (p[0] & 0x70) >> 4,
		OpCode: ws.OpCode(p[0] & 0x0f),
		Masked: p[1]&0x80 != 0,
	}
	rest := p[2:]
	switch l := p[1] & 0x7f; l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
	case 127:
		if rest[0]&0x80 != 0 {
			return h, ws.ErrHeaderLengthMSB
		}
		h.Length = int64(binary.BigEndian.Uint64(rest))
		rest = rest[8:]
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], rest)
	}
	return h, nil
}
