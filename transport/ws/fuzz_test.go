package ws_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/transport/admit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// commandSeeds are client commands, valid and not, that seed FuzzFrame as
// text frames (the session package fuzzes the command decoder itself).
var commandSeeds = []string{
	`{"op":"ping","ref":"r1"}`,
	`{"op":"subscribe","topic":"a.>","since":{"offset":0,"epoch":"e"}}`,
	`{"op":"unsubscribe","topic":"a.b","ref":"u"}`,
	`{"op":"publish","topic":"a.b","data":"caf\u00e9 \ud83d\ude00"}`,
	`{"op":"refresh","token":"a.b.c","ref":"r"}`,
	`{"op":"dance"}`,
	`{"op":"ping"`,
	`[1]`,
}

// fuzzMaxMessage is the MaxMessageSize of FuzzFrame's server: small, so
// that fragments reach it.
const fuzzMaxMessage = 512

// frameSpec is one frame of FuzzFrame's framed mode: the first header byte
// (FIN, RSV1-3, opcode) and the payload, which the fuzz target masks.
type frameSpec struct {
	b0      byte
	payload []byte
}

// encodeSpecs encodes frames for FuzzFrame's framed mode: per frame the
// first header byte, the payload length (at most 255) and the payload.
func encodeSpecs(frames ...frameSpec) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f.b0, byte(len(f.payload)))
		b = append(b, f.payload...)
	}
	return b
}

// decodeSpecs is the inverse of encodeSpecs; a short last frame takes what
// is left.
func decodeSpecs(b []byte) []frameSpec {
	var frames []frameSpec
	for len(b) >= 2 {
		f := frameSpec{b0: b[0]}
		n := min(int(b[1]), len(b)-2)
		f.payload, b = b[2:2+n], b[2+n:]
		frames = append(frames, f)
	}
	return frames
}

const (
	finText  = 0x80 | byte(ws.OpText)
	finBin   = 0x80 | byte(ws.OpBinary)
	finCont  = 0x80 | byte(ws.OpContinuation)
	finClose = 0x80 | byte(ws.OpClose)
	finPing  = 0x80 | byte(ws.OpPing)
	finPong  = 0x80 | byte(ws.OpPong)
)

// rawFrame is a complete frame as bytes on the wire.
func rawFrame(h ws.Header, payload []byte) []byte {
	var buf bytes.Buffer
	p := bytes.Clone(payload)
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	_ = ws.WriteHeader(&buf, h)
	buf.Write(p)
	return buf.Bytes()
}

// FuzzFrame feeds arbitrary client bytes into a real session over TCP
// loopback, after a real handshake, then half-closes. In framed mode the
// input is a list of frames (first header byte, length, payload) that the
// target masks properly, so the fuzzer explores the session's semantics;
// in raw mode the bytes go on the wire as they are. Whatever comes in, the
// server must not panic (a recovered panic would show as 1011), must only
// send well-formed server frames, at most one close frame and nothing
// after it, never 1004/1005/1006, and must end the session once the
// client is done. A recovered panic is logged as an error, which fails the
// target too.
func FuzzFrame(f *testing.F) {
	faults := &errorCounter{}
	h := newHarness(f, config{ws: wsserver.Config{
		MaxMessageSize: fuzzMaxMessage,
		CloseTimeout:   500 * time.Millisecond,
		WriteTimeout:   2 * time.Second,
		Heartbeat:      5 * time.Second,
		Logger:         slog.New(faults),
		// One session per input, thousands a second from one address:
		// the address limits are tested elsewhere.
		Policy: admit.Policy{
			IPConnRate: -1,
			IPMaxConns: -1,
		},
	}})

	for _, s := range commandSeeds {
		if len(s) <= 255 {
			f.Add(true, encodeSpecs(frameSpec{finText, []byte(s)}))
		}
	}
	big := paddedPing("big", 3*255)
	for _, seed := range [][]frameSpec{
		{{finText, []byte(`{"op":"subscribe","topic":"f.*"}`)}, {finText, []byte(`{"op":"publish","topic":"f.a","data":[1, 2]}`)}, {finText, []byte(`{"op":"unsubscribe","topic":"f.*"}`)}},
		{{byte(ws.OpText), []byte(`{"op":"pi`)}, {finPing, []byte("hello")}, {finCont, []byte(`ng","ref":"x"}`)}},
		{{byte(ws.OpText), big[:255]}, {byte(ws.OpContinuation), big[255:510]}, {finCont, big[510:]}},
		{{byte(ws.OpText), []byte("{\"op\":\"ping\",\"ref\":\"\xe2\x82")}, {finCont, []byte("\xac\"}")}},
		{{finClose, closeBody(1000, "bye")}},
		{{finClose, nil}},
		{{finClose, closeBody(4999, "app")}},
		{{finClose, closeBody(1005, "")}},
		{{finClose, closeBody(2999, "")}},
		{{finClose, []byte{3}}},
		{{finClose, closeBody(1000, "\xff")}},
		{{finBin, []byte{1, 2, 3}}},
		{{finText, []byte("\xff\xfe")}},
		{{finText | 0x40, []byte(`{"op":"ping"}`)}},
		{{0x80 | 0x3, nil}},
		{{0x80 | 0xB, nil}},
		{{finCont, []byte(`{}`)}},
		{{byte(ws.OpText), []byte(`{`)}, {finText, []byte(`{}`)}},
		{{byte(ws.OpPing), nil}},
		{{finPing, bytes.Repeat([]byte("p"), 126)}},
		{{finPong, []byte("unsolicited")}, {finPing, []byte("p")}, {finText, []byte(`{"op":"ping","ref":"after"}`)}},
	} {
		f.Add(true, encodeSpecs(seed...))
	}
	mask := [4]byte{1, 2, 3, 4}
	ping := []byte(`{"op":"ping","ref":"raw"}`)
	for _, seed := range [][]byte{
		rawFrame(ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: mask, Length: int64(len(ping))}, ping),
		rawFrame(ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(ping))}, ping),
		append(rawFrame(ws.Header{Fin: true, OpCode: ws.OpClose, Masked: true, Mask: mask, Length: 2}, closeBody(1000, "")), "trailing garbage"...),
		rawFrame(ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: mask, Length: 1 << 20}, nil),
		{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4},
		{0x81, 0xfe, 0, 10, 1, 2, 3, 4},
		{0x81},
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{},
	} {
		f.Add(false, seed)
	}

	f.Fuzz(func(t *testing.T, framed bool, data []byte) {
		c := h.dial(t)
		pings := 0
		writeDone := make(chan struct{})
		go func() {
			defer close(writeDone)
			if framed {
				for _, s := range decodeSpecs(data) {
					if ws.OpCode(s.b0&0xf) == ws.OpPing {
						pings++
					}
					hdr := ws.Header{Fin: s.b0&0x80 != 0, Rsv: s.b0 >> 4 & 7, OpCode: ws.OpCode(s.b0 & 0xf), Masked: true, Length: int64(len(s.payload))}
					if c.tryWriteRaw(hdr, s.payload) != nil {
						break // the server may close first
					}
				}
			} else {
				_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
				_, _ = c.conn.Write(data)
			}
			_ = c.conn.(*net.TCPConn).CloseWrite()
		}()

		frames, closes, pongs := 0, 0, 0
		var err error
		for {
			var fr ws.Frame
			fr, err = c.readFrame()
			if err != nil {
				break
			}
			frames++
			if closes > 0 {
				t.Fatalf("frame after the close frame: %s", describe(fr))
			}
			if err := checkFuzzFrame(fr, frames == 1); err != nil {
				t.Fatal(err)
			}
			switch fr.Header.OpCode {
			case ws.OpClose:
				closes++
			case ws.OpPong:
				pongs++
			}
		}
		<-writeDone
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server did not end the session within %v of the client's EOF", ioTimeout)
		}
		if framed && pongs > pings {
			t.Fatalf("%d pong frames for %d pings", pongs, pings)
		}
		if errors.Is(err, errBadServerFrame) {
			t.Fatal(err)
		}
		testkit.Eventually(t, waitTimeout, h.sessionsEnded)
		sent := h.srv.Stats().CloseSent
		for code := range forbiddenCloseCodes {
			if sent[int(code)] != 0 {
				t.Fatalf("server sent close code %d (%v)", code, sent)
			}
		}
		// A panic in a session is recovered, logged as an error and
		// answered with 1011; a client may send 1011 too, so the log tells.
		if msg := faults.first(); msg != "" {
			t.Fatalf("server logged an error: %s", msg)
		}
	})
}

// errorCounter is a slog.Handler that keeps the first error-level record
// it is given and discards the rest.
type errorCounter struct {
	mu  sync.Mutex
	msg string
}

func (h *errorCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }

func (h *errorCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.msg == "" {
		h.msg = r.Message
		r.Attrs(func(a slog.Attr) bool {
			h.msg += " " + a.String()
			return true
		})
	}
	return nil
}

func (h *errorCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *errorCounter) WithGroup(string) slog.Handler      { return h }

// first returns the first error logged, or "".
func (h *errorCounter) first() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msg
}

// checkFuzzFrame checks one server frame of FuzzFrame (readFrame has
// checked its header); first says whether it is the session's first frame,
// which must be the welcome.
func checkFuzzFrame(f ws.Frame, first bool) error {
	switch f.Header.OpCode {
	case ws.OpText:
		e, err := decodeEvent(f.Payload)
		if err != nil {
			return err
		}
		switch e.Type {
		case "welcome":
			if !first {
				return fmt.Errorf("a second welcome: %s", e)
			}
			return nil
		case "pong", "subscribed", "unsubscribed", "published", "message", "reset", "error":
		default:
			return fmt.Errorf("unknown frame type: %s", e)
		}
	case ws.OpClose:
		if len(f.Payload) < 2 {
			return fmt.Errorf("close frame without a code: %q", f.Payload)
		}
		code, reason := ws.ParseCloseFrameData(f.Payload)
		if forbiddenCloseCodes[code] {
			return fmt.Errorf("close code %d %q", code, reason)
		}
		if code < 1000 || code >= 5000 || (code > 1014 && code < 3000) {
			return fmt.Errorf("invalid close code %d %q", code, reason)
		}
	}
	if first {
		return fmt.Errorf("first frame is not the welcome: %s", describe(f))
	}
	return nil
}
