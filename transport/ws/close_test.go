package ws_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/internal/testkit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// testMaxMessage is the MaxMessageSize of the close-code tests' servers.
const testMaxMessage = 1024

// raw writes one frame with the given bits, Length = len(payload).
func (c *client) raw(fin bool, rsv byte, op ws.OpCode, masked bool, payload []byte) {
	c.t.Helper()
	c.writeRaw(ws.Header{Fin: fin, Rsv: rsv, OpCode: op, Masked: masked, Length: int64(len(payload))}, payload)
}

// paddedPing is a ping command with ref, padded with trailing JSON
// whitespace to exactly n bytes.
func paddedPing(ref string, n int) []byte {
	p := []byte(`{"op":"ping","ref":"` + ref + `"}`)
	return append(p, bytes.Repeat([]byte(" "), n-len(p))...)
}

// fragments writes p as a text message in pieces of at most size bytes.
func (c *client) fragments(p []byte, size int) {
	c.t.Helper()
	op := ws.OpText
	for {
		n := min(size, len(p))
		c.raw(n == len(p), 0, op, true, p[:n])
		p = p[n:]
		op = ws.OpContinuation
		if len(p) == 0 {
			return
		}
	}
}

func TestViolationsCloseWithTheirCodeOnceThenDisconnect(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{MaxMessageSize: testMaxMessage}})
	ping := []byte(`{"op":"ping","ref":"x"}`)
	type testCase struct {
		name   string
		write  func(c *client)
		code   ws.StatusCode
		reason string
	}
	tests := []testCase{
		{name: "unmasked frame", code: 1002, write: func(c *client) { c.raw(true, 0, ws.OpText, false, ping) }},
		{name: "rsv1 without extension", code: 1002, write: func(c *client) { c.raw(true, ws.Rsv(true, false, false), ws.OpText, true, ping) }},
		{name: "rsv2", code: 1002, write: func(c *client) { c.raw(true, ws.Rsv(false, true, false), ws.OpText, true, ping) }},
		{name: "rsv3 on a ping", code: 1002, write: func(c *client) { c.raw(true, ws.Rsv(false, false, true), ws.OpPing, true, nil) }},
		{name: "reserved data opcode 0x3", code: 1002, write: func(c *client) { c.raw(true, 0, 0x3, true, ping) }},
		{name: "reserved data opcode 0x7", code: 1002, write: func(c *client) { c.raw(true, 0, 0x7, true, nil) }},
		{name: "reserved control opcode 0xB", code: 1002, write: func(c *client) { c.raw(true, 0, 0xB, true, nil) }},
		{name: "reserved control opcode 0xF", code: 1002, write: func(c *client) { c.raw(true, 0, 0xF, true, []byte("x")) }},
		{name: "fragmented ping", code: 1002, write: func(c *client) { c.raw(false, 0, ws.OpPing, true, []byte("a")) }},
		{name: "fragmented pong", code: 1002, write: func(c *client) { c.raw(false, 0, ws.OpPong, true, nil) }},
		{name: "fragmented close", code: 1002, write: func(c *client) { c.raw(false, 0, ws.OpClose, true, closeBody(1000, "")) }},
		{name: "ping over 125 bytes", code: 1002, write: func(c *client) { c.raw(true, 0, ws.OpPing, true, bytes.Repeat([]byte("p"), 126)) }},
		{name: "pong over 125 bytes", code: 1002, write: func(c *client) { c.raw(true, 0, ws.OpPong, true, bytes.Repeat([]byte("p"), 126)) }},
		{name: "close over 125 bytes", code: 1002, write: func(c *client) { c.raw(true, 0, ws.OpClose, true, closeBody(1000, strings.Repeat("r", 124))) }},
		{name: "continuation without a start", code: 1002, write: func(c *client) { c.raw(false, 0, ws.OpContinuation, true, ping) }},
		{name: "final continuation without a start", code: 1002, write: func(c *client) { c.raw(true, 0, ws.OpContinuation, true, ping) }},
		{name: "text frame inside a fragmented message", code: 1002, write: func(c *client) {
			c.raw(false, 0, ws.OpText, true, ping[:5])
			c.raw(true, 0, ws.OpText, true, ping)
		}},
		{name: "binary frame inside a fragmented message", code: 1002, write: func(c *client) {
			c.raw(false, 0, ws.OpText, true, ping[:5])
			c.raw(true, 0, ws.OpBinary, true, ping)
		}},
		{name: "64-bit length with the most significant bit set", code: 1002, write: func(c *client) {
			// 0x81: FIN text; 0xFF: masked, 64-bit length; then the length
			// with its top bit set, and a mask key.
			_, _ = c.conn.Write([]byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4})
		}},
		{name: "close with a one-byte payload", code: 1002, write: func(c *client) { c.sendClose([]byte{0x03}) }},
		{name: "close reason not UTF-8", code: 1007, write: func(c *client) { c.sendClose(closeBody(1000, "bad \xff\xfe")) }},
		{name: "binary frame", code: 1003, reason: "binary", write: func(c *client) { c.raw(true, 0, ws.OpBinary, true, ping) }},
		{name: "fragmented binary frame", code: 1003, reason: "binary", write: func(c *client) { c.raw(false, 0, ws.OpBinary, true, ping) }},
		{name: "text not UTF-8", code: 1007, write: func(c *client) { c.send("{\"op\":\"ping\",\"ref\":\"\xff\"}") }},
		{name: "text with an overlong encoding", code: 1007, write: func(c *client) { c.send("{\"op\":\"ping\",\"ref\":\"\xc0\xaf\"}") }},
		{name: "text with an encoded surrogate", code: 1007, write: func(c *client) { c.send("{\"op\":\"ping\",\"ref\":\"\xed\xa0\x80\"}") }},
		{name: "text with a truncated UTF-8 sequence across fragments", code: 1007, write: func(c *client) {
			c.raw(false, 0, ws.OpText, true, []byte("{\"op\":\"ping\",\"ref\":\"\xe2\x82"))
			c.raw(true, 0, ws.OpContinuation, true, []byte(`"}`))
		}},
		{name: "one byte over the limit in one frame", code: 1009, reason: "too big", write: func(c *client) {
			c.raw(true, 0, ws.OpText, true, paddedPing("big", testMaxMessage+1))
		}},
		{name: "over the limit in many small fragments", code: 1009, reason: "too big", write: func(c *client) {
			c.fragments(paddedPing("frag", 3*testMaxMessage), 16)
		}},
		{name: "over the limit by declared length alone", code: 1009, reason: "too big", write: func(c *client) {
			// The header claims a terabyte; no payload follows.
			c.writeRaw(ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Length: 1 << 40}, nil)
		}},
	}
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		tests = append(tests, testCase{
			name:  fmt.Sprintf("close with invalid code %d", code),
			code:  1002,
			write: func(c *client) { c.sendClose(closeBody(code, "")) },
		})
	}
	for _, text := range []string{`[1]`, `"x"`, `nope`, `1`, `null`, ``, ` `, `{"op":"ping"`, `{"op":"ping"} {"op":"ping"}`, `{"op":"ping"}]`} {
		tests = append(tests, testCase{
			name:   fmt.Sprintf("text %q is not a JSON object", text),
			code:   1007,
			reason: "not a JSON object",
			write:  func(c *client) { c.send(text) },
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := h.dialWelcome(t)
			tt.write(c)
			// The server has stopped reading commands: this ping must
			// not be answered.
			_ = c.tryWriteRaw(textHeader(len(ping)), ping)
			if before := c.expectClose(tt.code, tt.reason); len(before) > 0 {
				t.Fatalf("server sent %s before its close frame", describe(before[0]))
			}
		})
	}
}

func TestFramingEdgeCasesKeepTheSessionOpen(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{MaxMessageSize: testMaxMessage}})
	// expectPong expects a pong control frame carrying payload.
	expectPong := func(c *client, payload []byte) {
		c.t.Helper()
		f, err := c.readFrame()
		if err != nil {
			c.t.Fatal(err)
		}
		if f.Header.OpCode != ws.OpPong || !bytes.Equal(f.Payload, payload) {
			c.t.Fatalf("want a pong frame with %q, got %s", payload, describe(f))
		}
	}
	tests := []struct {
		name string
		run  func(c *client)
	}{
		{name: "message of exactly the limit", run: func(c *client) {
			c.raw(true, 0, ws.OpText, true, paddedPing("max", testMaxMessage))
			c.expect("pong")
		}},
		{name: "message of exactly the limit in fragments", run: func(c *client) {
			c.fragments(paddedPing("max-frag", testMaxMessage), 100)
			c.expect("pong")
		}},
		{name: "limit applies per message, not per session", run: func(c *client) {
			for i := 0; i < 3; i++ {
				c.raw(true, 0, ws.OpText, true, paddedPing("again", testMaxMessage))
				c.expect("pong")
			}
		}},
		{name: "command in three fragments", run: func(c *client) {
			c.raw(false, 0, ws.OpText, true, []byte(`{"op":`))
			c.raw(false, 0, ws.OpContinuation, true, []byte(`"ping","ref"`))
			c.raw(true, 0, ws.OpContinuation, true, []byte(`:"three"}`))
			if e := c.expect("pong"); e.Ref != "three" {
				t.Fatalf("pong %s", e)
			}
		}},
		{name: "empty fragments", run: func(c *client) {
			c.raw(false, 0, ws.OpText, true, nil)
			c.raw(false, 0, ws.OpContinuation, true, []byte(`{"op":"ping","ref":"e"}`))
			c.raw(true, 0, ws.OpContinuation, true, nil)
			c.expect("pong")
		}},
		{name: "UTF-8 character split across fragments", run: func(c *client) {
			c.raw(false, 0, ws.OpText, true, []byte("{\"op\":\"ping\",\"ref\":\"\xe2\x82"))
			c.raw(true, 0, ws.OpContinuation, true, []byte("\xac\"}"))
			if e := c.expect("pong"); e.Ref != "€" {
				t.Fatalf("pong ref %q, want €", e.Ref)
			}
		}},
		{name: "ping inside a fragmented message is answered with its payload", run: func(c *client) {
			c.raw(false, 0, ws.OpText, true, []byte(`{"op":"pi`))
			c.raw(true, 0, ws.OpPing, true, []byte("hello"))
			expectPong(c, []byte("hello"))
			c.raw(true, 0, ws.OpContinuation, true, []byte(`ng","ref":"frag"}`))
			if e := c.expect("pong"); e.Ref != "frag" {
				t.Fatalf("pong %s", e)
			}
		}},
		{name: "ping and pong inside a fragmented message", run: func(c *client) {
			c.raw(false, 0, ws.OpText, true, []byte(`{"op":`))
			c.raw(true, 0, ws.OpPong, true, []byte("unsolicited"))
			c.raw(true, 0, ws.OpPing, true, []byte("p1"))
			c.raw(false, 0, ws.OpContinuation, true, []byte(`"ping",`))
			c.raw(true, 0, ws.OpPing, true, []byte("p2"))
			c.raw(true, 0, ws.OpContinuation, true, []byte(`"ref":"mixed"}`))
			expectPong(c, []byte("p1"))
			expectPong(c, []byte("p2"))
			c.expect("pong")
		}},
		{name: "ping with an empty payload", run: func(c *client) {
			c.raw(true, 0, ws.OpPing, true, nil)
			expectPong(c, []byte{})
		}},
		{name: "ping with a 125-byte payload", run: func(c *client) {
			p := bytes.Repeat([]byte{0xA5}, 125)
			c.raw(true, 0, ws.OpPing, true, p)
			expectPong(c, p)
		}},
		{name: "unsolicited pong is ignored", run: func(c *client) {
			c.raw(true, 0, ws.OpPong, true, []byte("hi"))
		}},
		{name: "JSON whitespace around the object", run: func(c *client) {
			c.send(" \t\r\n{\"op\":\"ping\",\"ref\":\"ws\"}\n ")
			c.expect("pong")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := h.dialWelcome(t)
			tt.run(c)
			c.ping("still-open")
		})
	}
}

func TestClientCloseIsEchoedOnceThenDisconnected(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	tests := []struct {
		name    string
		payload []byte
		want    ws.StatusCode
		midMsg  bool
	}{
		{name: "1000 normal", payload: closeBody(1000, "bye"), want: 1000},
		{name: "1000 without reason", payload: closeBody(1000, ""), want: 1000},
		{name: "1001 going away", payload: closeBody(1001, "tab closed"), want: 1001},
		{name: "1003", payload: closeBody(1003, ""), want: 1003},
		{name: "1011", payload: closeBody(1011, "client fault"), want: 1011},
		{name: "1014", payload: closeBody(1014, ""), want: 1014},
		{name: "3000 registered", payload: closeBody(3000, "app"), want: 3000},
		{name: "4999 private", payload: closeBody(4999, "private"), want: 4999},
		{name: "no status code is answered with 1000", payload: nil, want: 1000},
		{name: "reason with unicode", payload: closeBody(1000, "au revoir ☕"), want: 1000},
		{name: "close inside a fragmented message", payload: closeBody(1000, ""), want: 1000, midMsg: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := h.dialWelcome(t)
			if tt.midMsg {
				c.raw(false, 0, ws.OpText, true, []byte(`{"op":"ping",`))
			}
			c.sendClose(tt.payload)
			if before := c.expectClose(tt.want, ""); len(before) > 0 {
				t.Fatalf("server sent %s before its close frame", describe(before[0]))
			}
		})
	}
}

func TestServerStatsCountCloseCodesSentAndReceived(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	steps := []struct {
		name     string
		run      func(c *client)
		sent     map[int]uint64
		received map[int]uint64
	}{
		{
			name: "protocol error",
			run: func(c *client) {
				c.raw(true, 0, ws.OpText, false, []byte(`{}`))
				c.expectClose(1002, "")
			},
			sent: map[int]uint64{1002: 1},
		},
		{
			name: "client close 1000",
			run: func(c *client) {
				c.sendClose(closeBody(1000, ""))
				c.expectClose(1000, "")
			},
			sent:     map[int]uint64{1002: 1, 1000: 1},
			received: map[int]uint64{1000: 1},
		},
		{
			name: "client close without code counts as 1005",
			run: func(c *client) {
				c.sendClose(nil)
				c.expectClose(1000, "")
			},
			sent:     map[int]uint64{1002: 1, 1000: 2},
			received: map[int]uint64{1000: 1, 1005: 1},
		},
		{
			name: "binary frame",
			run: func(c *client) {
				c.raw(true, 0, ws.OpBinary, true, []byte{1})
				c.expectClose(1003, "")
			},
			sent:     map[int]uint64{1002: 1, 1000: 2, 1003: 1},
			received: map[int]uint64{1000: 1, 1005: 1},
		},
		{
			name:     "connection dropped without close counts as 1006",
			run:      func(c *client) { _ = c.conn.Close() },
			sent:     map[int]uint64{1002: 1, 1000: 2, 1003: 1},
			received: map[int]uint64{1000: 1, 1005: 1, 1006: 1},
		},
	}
	for _, step := range steps {
		c, _ := h.dialWelcome(t)
		step.run(c)
		_ = c.conn.Close()
		testkit.Eventually(t, waitTimeout, func() error {
			st := h.srv.Stats()
			if fmt.Sprint(st.CloseSent) != fmt.Sprint(step.sent) || fmt.Sprint(st.CloseReceived) != fmt.Sprint(step.received) {
				return fmt.Errorf("%s: close counters sent %v, received %v; want sent %v, received %v",
					step.name, st.CloseSent, st.CloseReceived, step.sent, step.received)
			}
			return nil
		})
		testkit.Eventually(t, waitTimeout, func() error {
			if err := h.sessionsEnded(); err != nil {
				return fmt.Errorf("%s: %w", step.name, err)
			}
			return nil
		})
	}
	st := h.srv.Stats()
	for code := range forbiddenCloseCodes {
		if st.CloseSent[int(code)] != 0 {
			t.Errorf("CloseSent[%d] = %d, want 0", code, st.CloseSent[int(code)])
		}
	}
}

func TestWelcomeComesFirstEvenWhenTheClientEndsAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	tests := []struct {
		name  string
		write func(c *client)
		code  ws.StatusCode
	}{
		{name: "close", code: 1000, write: func(c *client) { c.sendClose(closeBody(1000, "")) }},
		{name: "unmasked frame", code: 1002, write: func(c *client) { c.raw(true, 0, ws.OpText, false, []byte(`{}`)) }},
		{name: "binary frame", code: 1003, write: func(c *client) { c.raw(true, 0, ws.OpBinary, true, []byte{0}) }},
		{name: "not JSON", code: 1007, write: func(c *client) { c.send("nope") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for i := 0; i < 20; i++ {
				c := h.dial(t)
				tt.write(c) // before reading anything
				before := c.expectClose(tt.code, "")
				if len(before) != 1 || before[0].Header.OpCode != ws.OpText {
					t.Fatalf("attempt %d: %d frames before the close, want only the welcome", i, len(before))
				}
				if e, err := decodeEvent(before[0].Payload); err != nil || e.Type != "welcome" {
					t.Fatalf("attempt %d: first frame %s, want the welcome", i, describe(before[0]))
				}
				_ = c.conn.Close()
			}
		})
	}
}
