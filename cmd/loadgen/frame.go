//go:build linux

package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
)

// Server frames are read with a small parser of our own rather than
// wsutil or package client: the loadgen shares two cores with the broker,
// and a message costs it no allocation this way (package client decodes
// every frame into a Delivery and keeps per-topic positions, the right
// work for an application and the wrong one for a load generator that
// holds tens of thousands of sessions). The broker never masks or
// fragments its frames.

var (
	errMasked     = errors.New("server frame is masked")
	errFragmented = errors.New("server frame is fragmented")
	errTooLarge   = errors.New("server frame larger than the read buffer limit")
)

// WebSocket opcodes the loadgen handles.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// maxFrame bounds one server frame (the broker's frames are small).
const maxFrame = 1 << 20

// nextFrame parses the frame at the start of b. It returns the opcode,
// the payload and the frame's whole length, or n == 0 when b does not
// hold the whole frame yet (need is then the length the frame needs, or
// 0 if the header itself is incomplete).
func nextFrame(b []byte) (op byte, payload []byte, n, need int, err error) {
	if len(b) < 2 {
		return 0, nil, 0, 0, nil
	}
	if b[0]&0x80 == 0 {
		return 0, nil, 0, 0, errFragmented
	}
	if b[1]&0x80 != 0 {
		return 0, nil, 0, 0, errMasked
	}
	op = b[0] & 0x0f
	hl := 2
	l := uint64(b[1] & 0x7f)
	switch l {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0, 0, nil
		}
		l, hl = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil, 0, 0, nil
		}
		l, hl = binary.BigEndian.Uint64(b[2:]), 10
	}
	if l > maxFrame {
		return 0, nil, 0, 0, errTooLarge
	}
	total := hl + int(l)
	if len(b) < total {
		return 0, nil, 0, total, nil
	}
	return op, b[hl:total], total, total, nil
}

var (
	msgPrefix    = []byte(`{"type":"message","topic":"`)
	offsetKey    = []byte(`,"offset":`)
	dataTSKey    = []byte(`,"data":{"ts":`)
	subKey       = []byte(`,"sub":"`)
	errNotMsg    = errors.New("not a message frame")
	errBadFormat = errors.New("message frame without topic, offset or data.ts")
)

// isMessage reports whether p is a `message` frame's payload.
func isMessage(p []byte) bool { return bytes.HasPrefix(p, msgPrefix) }

// parseMessage extracts what the loadgen needs from a `message` payload as
// the broker encodes it (type, topic, id, offset, epoch, time, data, sub):
// the topic, the subscription pattern (nil for an exact subscription),
// the offset and the publisher's timestamp data.ts (unix nanoseconds).
func parseMessage(p []byte) (topic, sub []byte, offset uint64, ts int64, err error) {
	if !isMessage(p) {
		return nil, nil, 0, 0, errNotMsg
	}
	rest := p[len(msgPrefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil, nil, 0, 0, errBadFormat
	}
	topic, rest = rest[:end], rest[end:]
	offset, rest, ok := uintAfter(rest, offsetKey)
	if !ok {
		return nil, nil, 0, 0, errBadFormat
	}
	u, rest, ok := uintAfter(rest, dataTSKey)
	if !ok {
		return nil, nil, 0, 0, errBadFormat
	}
	ts = int64(u)
	// The pattern comes after data, as the last field.
	if i := bytes.LastIndex(rest, subKey); i >= 0 {
		s := rest[i+len(subKey):]
		if j := bytes.IndexByte(s, '"'); j >= 0 {
			sub = s[:j]
		}
	}
	return topic, sub, offset, ts, nil
}

// parseUint reads a decimal number at the start of b; ok is false when
// there is none or it does not fit in 64 bits.
func parseUint(b []byte) (v uint64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, b, false
		}
		v = v*10 + d
	}
	return v, b[i:], i > 0
}

// appendData appends a publication's data: the timestamp first (so that
// parseMessage finds it right after "data":) and padding up to size bytes.
func appendData(b []byte, ts int64, size int) []byte {
	start := len(b)
	b = append(b, `{"ts":`...)
	b = appendInt(b, ts)
	b = append(b, `,"p":"`...)
	for pad := size - (len(b) - start) - 2; pad > 0; pad-- {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

func appendInt(b []byte, v int64) []byte {
	var tmp [20]byte
	i := len(tmp)
	neg := v < 0
	u := uint64(v)
	if neg {
		u = uint64(-v)
	}
	for {
		i--
		tmp[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			break
		}
	}
	if neg {
		i--
		tmp[i] = '-'
	}
	return append(b, tmp[i:]...)
}

// uintAfter parses the unsigned number that follows the first key in b,
// and returns it with the rest of b after it.
func uintAfter(b, key []byte) (uint64, []byte, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, nil, false
	}
	return parseUint(b[i+len(key):])
}
