//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// FuzzServerFrame feeds arbitrary bytes, as a broker or anything posing as
// one could send them, to the load generator's frame and message parsers.
// They must not panic or read past the input, must report an incomplete
// frame as such, and must agree with gobwas/ws on every frame they accept.
func FuzzServerFrame(f *testing.F) {
	f.Add(ws.MustCompileFrame(ws.NewTextFrame([]byte(`{"type":"pong"}`))))
	f.Add(ws.MustCompileFrame(ws.NewTextFrame(bytes.Repeat([]byte("a"), 300))))
	f.Add(ws.MustCompileFrame(ws.NewPingFrame([]byte("hi"))))
	f.Add(ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame([]byte("x")))))
	f.Add(ws.MustCompileFrame(ws.NewFrame(ws.OpText, false, []byte("part"))))
	f.Add([]byte{0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0x81, 126, 0x01})
	msg := wsserver.Encoder{}.Message(&broker.Message{
		Topic: "prices.eur.usd", ID: "7f97ee57-0000-4000-8000-000000000000",
		Offset: 42, Epoch: "c930f582", Time: time.Unix(1700000000, 5),
		Data: appendData(nil, 1700000000123456789, 64),
	}, "prices.*.usd")
	f.Add(msg)
	f.Add(msg[:len(msg)-1])
	f.Add(ws.MustCompileFrame(ws.NewTextFrame([]byte(`{"type":"message","topic":"a","offset":99999999999999999999,"data":{"ts":1}}`))))

	f.Fuzz(func(t *testing.T, b []byte) {
		h, hl, herr := readHeader(b)
		op, p, n, need, err := nextFrame(b)
		if err != nil {
			checkRefusal(t, h, herr, err)
			if n != 0 || p != nil {
				t.Fatalf("error %v with n=%d and a payload", err, n)
			}
			return
		}
		if n == 0 {
			// Incomplete: gobwas/ws cannot read the header either, or
			// the frame it declares is longer than b.
			if need == 0 && herr == nil || need != 0 && (herr != nil || need != hl+int(h.Length) || need <= len(b)) {
				t.Fatalf("incomplete, need %d, for % x (%d bytes); gobwas/ws: %+v, %v", need, b[:min(len(b), 10)], len(b), h, herr)
			}
			return
		}
		if herr != nil {
			t.Fatalf("nextFrame accepted % x, gobwas/ws: %v", b[:min(len(b), 10)], herr)
		}
		if n > len(b) || !h.Fin || h.Masked || byte(h.OpCode) != op || h.Length != int64(len(p)) || hl+len(p) != n {
			t.Fatalf("nextFrame: op %d, %d payload bytes, %d in all of %d; gobwas/ws: %+v, header %d bytes", op, len(p), n, len(b), h, hl)
		}
		if !bytes.Equal(p, b[hl:n]) {
			t.Fatal("the payload is not the frame's tail")
		}
		if !isMessage(p) {
			return
		}
		topic, sub, _, _, err := parseMessage(p)
		if err != nil {
			return
		}
		// What the parser returns lies inside the payload it was given.
		for _, s := range [][]byte{topic, sub} {
			if len(s) > 0 && !bytes.Contains(p, s) {
				t.Fatalf("parseMessage returned %q, not in %q", s, p)
			}
		}
	})
}

// readHeader is the fuzz targets' reference: the header of frame b as
// gobwas/ws reads it, and how many bytes of b it took (a length may be
// encoded in more bytes than it needs, so ws.HeaderSize does not tell).
func readHeader(b []byte) (h ws.Header, size int, err error) {
	r := bytes.NewReader(b)
	h, err = ws.ReadHeader(r)
	return h, len(b) - r.Len(), err
}

// checkRefusal checks that err is the right reason to refuse a frame
// whose header gobwas/ws read as h (herr: its error, if any).
func checkRefusal(t *testing.T, h ws.Header, herr, err error) {
	t.Helper()
	switch {
	case !h.Fin:
		if !errors.Is(err, errFragmented) {
			t.Fatalf("no FIN bit: %v, want errFragmented", err)
		}
	case h.Masked:
		if !errors.Is(err, errMasked) {
			t.Fatalf("mask bit: %v, want errMasked", err)
		}
	default:
		if !errors.Is(err, errTooLarge) || (!errors.Is(herr, ws.ErrHeaderLengthMSB) && h.Length <= maxFrame) {
			t.Fatalf("%v for a header %+v (%v), limit %d", err, h, herr, maxFrame)
		}
	}
}

// FuzzMessageRoundTrip encodes a message as the broker does, with the load
// generator's data, and checks that the load generator reads back the
// topic, the pattern, the offset and the publish timestamp.
func FuzzMessageRoundTrip(f *testing.F) {
	f.Add("prices.eur.usd", "", uint64(42), int64(1700000000123456789), uint16(64))
	f.Add("prices.eur.usd", "prices.*.usd", uint64(1), int64(0), uint16(0))
	f.Add("a", ">", uint64(math.MaxUint64), int64(math.MaxInt64), uint16(4096))
	f.Fuzz(func(t *testing.T, topic, sub string, offset uint64, ts int64, size uint16) {
		if broker.ValidateTopic(topic) != nil || ts < 0 {
			return // the broker sends no such message
		}
		if sub != "" {
			if wild, err := broker.ValidatePattern(sub); err != nil || !wild {
				return
			}
		}
		data := appendData(nil, ts, int(size))
		if !json.Valid(data) {
			t.Fatalf("appendData(%d, %d) is not JSON: %s", ts, size, data)
		}
		frame := wsserver.Encoder{}.Message(&broker.Message{
			Topic: topic, ID: "7f97ee57-0000-4000-8000-000000000000",
			Offset: offset, Epoch: "c930f582", Time: time.Unix(0, ts), Data: data,
		}, sub)
		op, p, n, _, err := nextFrame(frame)
		if err != nil || n != len(frame) || op != opText {
			t.Fatalf("nextFrame: op %d n %d of %d: %v", op, n, len(frame), err)
		}
		gotTopic, gotSub, gotOffset, gotTS, err := parseMessage(p)
		if err != nil {
			t.Fatalf("parseMessage(%s): %v", p, err)
		}
		if string(gotTopic) != topic || string(gotSub) != sub || gotOffset != offset || gotTS != ts {
			t.Fatalf("read back topic %q sub %q offset %d ts %d from %s; want %q %q %s %d",
				gotTopic, gotSub, gotOffset, gotTS, p, topic, sub, strconv.FormatUint(offset, 10), ts)
		}
	})
}
