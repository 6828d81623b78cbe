package ws_test

// The conformance suite: what the Autobahn TestSuite's cases 1–7, 9 and 10
// check of a WebSocket server, played over raw TCP against the broker.
// Autobahn's server cases echo what they receive; the broker speaks JSON
// commands instead, so a case sends `ping` commands (padded with JSON
// whitespace to the size it needs) and checks the `pong` answers, and a
// text message that is not a JSON object is a 1007 here where an echo
// server would echo it. Every case asserts the exact close code the server
// ends the session with: a case that must keep the session open ends with
// the client's close 1000, which the server must echo.

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// confMaxMessage is the MaxMessageSize of the conformance servers: the
// 1 MiB class of Autobahn's section 9.
const confMaxMessage = 1 << 20

// confCase is one conformance case.
type confCase struct {
	id   string
	send func(c *client)
	// want lists the frames the server must send after the welcome and
	// before its close frame, summarized by summarize.
	want []string
	// close is the server's close code; 0 means the session must stay
	// open: the runner then sends a close 1000, which must be echoed.
	close  ws.StatusCode
	reason string
}

// confCount counts the cases run, for the report.
var confCount atomic.Int64

// newConfHarness starts a server for the conformance cases: large
// messages, no rate or address limits (they are tested elsewhere).
// goroutineReaders picks the reader model.
func newConfHarness(t testing.TB, goroutineReaders bool) *harness {
	return newHarness(t, config{ws: wsserver.Config{
		GoroutineReaders: goroutineReaders,
		MaxMessageSize:   confMaxMessage,
		OpLimits:         session.OpLimits{OpRate: -1},
		Policy: admit.Policy{
			IPConnRate:  -1,
			IPMaxConns:  -1,
			MaxSessions: -1,
		},
		CloseTimeout: time.Second,
	}})
}

// runConf plays cases on h, each on its own session.
func runConf(t *testing.T, h *harness, cases []confCase) {
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) {
			t.Parallel()
			confCount.Add(1)
			c, _ := h.dialWelcome(t)
			tc.send(c)
			code := tc.close
			if code == 0 {
				// The session must still be open: it answers our close.
				_ = c.tryWriteRaw(ws.Header{Fin: true, OpCode: ws.OpClose, Masked: true, Length: 2}, closeBody(1000, ""))
				code = 1000
			}
			before := c.expectClose(code, tc.reason)
			got := make([]string, len(before))
			for i, f := range before {
				got[i] = summarize(t, f)
			}
			if len(got) != len(tc.want) || fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
				t.Fatalf("frames before the close:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// summarize describes a server frame: "pong-frame <payload>" for a pong
// control frame, "<type> <ref>" for a text frame ("error <code> <ref>"
// for an error).
func summarize(t testing.TB, f ws.Frame) string {
	t.Helper()
	switch f.Header.OpCode {
	case ws.OpPong:
		return "pong-frame " + string(f.Payload)
	case ws.OpText:
		typ, _, err := peekMessage(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if typ == "pong" && len(f.Payload) > 4096 {
			return "pong (large)"
		}
		e, err := decodeEvent(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if e.Type == "error" {
			return "error " + e.Code + " " + e.Ref
		}
		return e.Type + " " + e.Ref
	}
	return describe(f)
}

// cmd is a ping command with ref, padded with spaces to n bytes (n = 0:
// no padding).
func cmd(ref string, n int) []byte {
	p := []byte(`{"op":"ping","ref":"` + ref + `"}`)
	if n > len(p) {
		p = append(p, bytes.Repeat([]byte(" "), n-len(p))...)
	}
	return p
}

// frame is one frame of a case: FIN, RSV bits, opcode, payload; always
// masked unless unmasked is set.
type frame struct {
	fin      bool
	rsv      byte
	op       ws.OpCode
	payload  []byte
	unmasked bool
}

func text(p []byte) frame           { return frame{fin: true, op: ws.OpText, payload: p} }
func textStart(p []byte) frame      { return frame{op: ws.OpText, payload: p} }
func cont(p []byte) frame           { return frame{op: ws.OpContinuation, payload: p} }
func contFin(p []byte) frame        { return frame{fin: true, op: ws.OpContinuation, payload: p} }
func ping(p []byte) frame           { return frame{fin: true, op: ws.OpPing, payload: p} }
func pong(p []byte) frame           { return frame{fin: true, op: ws.OpPong, payload: p} }
func closeF(p []byte) frame         { return frame{fin: true, op: ws.OpClose, payload: p} }
func binaryF(p []byte) frame        { return frame{fin: true, op: ws.OpBinary, payload: p} }
func opFrame(op ws.OpCode) frame    { return frame{fin: true, op: op} }
func withRSV(f frame, r byte) frame { f.rsv = r; return f }

// encode returns the frames' bytes as a client sends them.
func encode(frames ...frame) []byte {
	var buf bytes.Buffer
	for _, f := range frames {
		h := ws.Header{Fin: f.fin, Rsv: f.rsv, OpCode: f.op, Masked: !f.unmasked, Length: int64(len(f.payload))}
		p := bytes.Clone(f.payload)
		if h.Masked {
			h.Mask = ws.NewMask()
			ws.Cipher(p, h.Mask, 0)
		}
		_ = ws.WriteHeader(&buf, h)
		buf.Write(p)
	}
	return buf.Bytes()
}

// sendFrames writes frames in one write.
func sendFrames(frames ...frame) func(c *client) {
	return chopped(0, frames...)
}

// chopped writes frames in writes of n bytes (0: one write), as Autobahn's
// "chopped" cases do, so that the server reads headers and payloads in
// pieces.
func chopped(n int, frames ...frame) func(c *client) {
	b := encode(frames...)
	return func(c *client) {
		if n <= 0 {
			n = len(b)
		}
		for p := b; len(p) > 0; {
			k := min(n, len(p))
			_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
			if _, err := c.conn.Write(p[:k]); err != nil {
				return // the server may close mid-way after a violation
			}
			p = p[k:]
		}
	}
}

// fragmented splits p into a text message of fragments of size bytes.
func fragmented(p []byte, size int) []frame {
	var out []frame
	op := ws.OpText
	for {
		n := min(size, len(p))
		out = append(out, frame{fin: n == len(p), op: op, payload: p[:n]})
		p, op = p[n:], ws.OpContinuation
		if len(p) == 0 {
			return out
		}
	}
}

// interleave puts ctl after every k-th frame of frames.
func interleave(frames []frame, k int, ctl frame) []frame {
	var out []frame
	for i, f := range frames {
		out = append(out, f)
		if (i+1)%k == 0 && i != len(frames)-1 {
			out = append(out, ctl)
		}
	}
	return out
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// Section 1: framing of text and binary messages of the lengths at the
// edges of the 7-bit, 16-bit and 64-bit length encodings.
func framingCases() []confCase {
	var cs []confCase
	for i, n := range []int{125, 126, 127, 128, 65535, 65536} {
		cs = append(cs, confCase{id: fmt.Sprintf("1.1.%d/text-%d", i+2, n), send: sendFrames(text(cmd("t", n))), want: []string{"pong t"}})
	}
	cs = append(cs,
		confCase{id: "1.1.1/empty-text", send: sendFrames(text(nil)), close: 1007, reason: "not a JSON object"},
		confCase{id: "1.1.8/text-65536-chopped-997", send: chopped(997, text(cmd("c", 65536))), want: []string{"pong c"}},
		confCase{id: "1.1.9/text-in-1-byte-writes", send: chopped(1, text(cmd("one", 200))), want: []string{"pong one"}},
		confCase{id: "1.1.10/many-messages-one-write", send: sendFrames(text(cmd("a", 0)), text(cmd("b", 130)), text(cmd("c", 70000))),
			want: []string{"pong a", "pong b", "pong c"}},
	)
	for i, n := range []int{0, 125, 126, 127, 128, 65535, 65536} {
		cs = append(cs, confCase{id: fmt.Sprintf("1.2.%d/binary-%d", i+1, n), send: sendFrames(binaryF(make([]byte, n))), close: 1003})
	}
	cs = append(cs, confCase{id: "1.2.8/binary-65536-chopped-997", send: chopped(997, binaryF(make([]byte, 65536))), close: 1003})
	return cs
}

// Section 2: pings and pongs.
func pingCases() []confCase {
	p125 := bytes.Repeat([]byte("*"), 125)
	bin := []byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}
	ten := make([]frame, 10)
	var tenWant []string
	for i := range ten {
		ten[i] = ping([]byte("payload-" + strconv.Itoa(i)))
		tenWant = append(tenWant, "pong-frame payload-"+strconv.Itoa(i))
	}
	return []confCase{
		{id: "2.1/ping-empty", send: sendFrames(ping(nil)), want: []string{"pong-frame "}},
		{id: "2.2/ping-text", send: sendFrames(ping([]byte("Hello, world!"))), want: []string{"pong-frame Hello, world!"}},
		{id: "2.3/ping-binary", send: sendFrames(ping(bin)), want: []string{"pong-frame " + string(bin)}},
		{id: "2.4/ping-125", send: sendFrames(ping(p125)), want: []string{"pong-frame " + string(p125)}},
		{id: "2.5/ping-126", send: sendFrames(ping(append(p125, '*'))), close: 1002},
		{id: "2.6/ping-125-chopped-1", send: chopped(1, ping(p125)), want: []string{"pong-frame " + string(p125)}},
		{id: "2.7/unsolicited-pong-empty", send: sendFrames(pong(nil))},
		{id: "2.8/unsolicited-pong", send: sendFrames(pong([]byte("unsolicited")))},
		{id: "2.9/unsolicited-pong-then-ping", send: sendFrames(pong([]byte("u")), ping([]byte("p"))), want: []string{"pong-frame p"}},
		{id: "2.10/ten-pings", send: sendFrames(ten...), want: tenWant},
		{id: "2.11/ten-pings-chopped-1", send: chopped(1, ten...), want: tenWant},
		{id: "2.12/ping-unmasked", send: sendFrames(frame{fin: true, op: ws.OpPing, unmasked: true}), close: 1002},
	}
}

// Section 3: reserved bits, on every opcode, alone and after a message
// that must be answered first.
func reservedBitCases() []confCase {
	var cs []confCase
	for rsv := byte(1); rsv <= 7; rsv++ {
		for _, f := range []frame{text(cmd("x", 0)), binaryF([]byte{1}), ping([]byte("p")), pong(nil), closeF(closeBody(1000, "")), contFin(nil)} {
			cs = append(cs, confCase{
				id:    fmt.Sprintf("3.%d/rsv-%03b-op-%x", rsv, rsv, f.op),
				send:  sendFrames(withRSV(f, rsv<<0)),
				close: 1002,
			})
		}
		// A valid message is answered; the frame with reserved bits ends
		// the session before the ping after it is answered.
		cs = append(cs, confCase{
			id:    fmt.Sprintf("3.%d/after-a-message", rsv),
			send:  sendFrames(text(cmd("ok", 0)), withRSV(text(cmd("bad", 0)), rsv), ping([]byte("late"))),
			want:  []string{"pong ok"},
			close: 1002,
		}, confCase{
			id:    fmt.Sprintf("3.%d/chopped", rsv),
			send:  chopped(1, text(cmd("ok", 0)), withRSV(text(cmd("bad", 0)), rsv), ping([]byte("late"))),
			want:  []string{"pong ok"},
			close: 1002,
		})
	}
	return cs
}

// Section 4: reserved opcodes.
func opcodeCases() []confCase {
	var cs []confCase
	for _, op := range []ws.OpCode{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		cs = append(cs,
			confCase{id: fmt.Sprintf("4.%x.1/alone", op), send: sendFrames(opFrame(op)), close: 1002},
			confCase{id: fmt.Sprintf("4.%x.2/with-payload", op), send: sendFrames(frame{fin: true, op: op, payload: []byte("reserved")}), close: 1002},
			confCase{id: fmt.Sprintf("4.%x.3/after-a-message-before-a-ping", op),
				send: sendFrames(text(cmd("ok", 0)), opFrame(op), ping([]byte("late"))), want: []string{"pong ok"}, close: 1002},
			confCase{id: fmt.Sprintf("4.%x.4/chopped", op),
				send: chopped(1, text(cmd("ok", 0)), frame{fin: true, op: op, payload: []byte("r")}, ping([]byte("late"))), want: []string{"pong ok"}, close: 1002},
		)
	}
	return cs
}

// Section 5: fragmentation, with control frames between fragments.
func fragmentationCases() []confCase {
	msg := cmd("frag", 300)
	cs := []confCase{
		{id: "5.1/ping-fragmented", send: sendFrames(frame{op: ws.OpPing, payload: []byte("a")}, frame{fin: true, op: ws.OpContinuation, payload: []byte("b")}), close: 1002},
		{id: "5.2/pong-fragmented", send: sendFrames(frame{op: ws.OpPong, payload: []byte("a")}, frame{fin: true, op: ws.OpContinuation, payload: []byte("b")}), close: 1002},
		{id: "5.2b/close-fragmented", send: sendFrames(frame{op: ws.OpClose, payload: closeBody(1000, "")}), close: 1002},
		{id: "5.3/text-in-2", send: sendFrames(fragmented(msg, 150)...), want: []string{"pong frag"}},
		{id: "5.4/text-in-2-chopped", send: chopped(1, fragmented(msg, 150)...), want: []string{"pong frag"}},
		{id: "5.6/ping-between-2", send: sendFrames(textStart(msg[:10]), ping([]byte("between")), contFin(msg[10:])),
			want: []string{"pong-frame between", "pong frag"}},
		{id: "5.8/ping-between-2-chopped", send: chopped(1, textStart(msg[:10]), ping([]byte("between")), contFin(msg[10:])),
			want: []string{"pong-frame between", "pong frag"}},
		{id: "5.9/continuation-fin-no-start", send: sendFrames(contFin(msg), text(cmd("late", 0))), close: 1002},
		{id: "5.10/continuation-fin-no-start-chopped", send: chopped(1, contFin(msg), text(cmd("late", 0))), close: 1002},
		{id: "5.12/continuation-no-start", send: sendFrames(cont(msg), text(cmd("late", 0))), close: 1002},
		{id: "5.15/continuation-after-the-end", send: sendFrames(textStart(msg[:10]), contFin(msg[10:]), cont([]byte("x")), contFin([]byte("y"))),
			want: []string{"pong frag"}, close: 1002},
		{id: "5.16/continuation-then-message-twice", send: sendFrames(cont([]byte("x")), textStart(msg[:10]), contFin(msg[10:])), close: 1002},
		{id: "5.17/continuation-fin-then-message", send: sendFrames(contFin([]byte("x")), textStart(msg[:10]), contFin(msg[10:])), close: 1002},
		{id: "5.18/text-inside-a-message", send: sendFrames(textStart(msg[:10]), text(msg)), close: 1002},
		{id: "5.18b/binary-inside-a-message", send: sendFrames(textStart(msg[:10]), binaryF([]byte{1})), close: 1002},
		{id: "5.18c/text-start-inside-a-message", send: sendFrames(textStart(msg[:10]), textStart(msg[10:])), close: 1002},
		{id: "5.19/five-fragments-two-pings", send: sendFrames(textStart(msg[:5]), cont(msg[5:10]), ping([]byte("p1")), cont(msg[10:15]), cont(msg[15:20]), ping([]byte("p2")), contFin(msg[20:])),
			want: []string{"pong-frame p1", "pong-frame p2", "pong frag"}},
		{id: "5.20/five-fragments-two-pings-chopped", send: chopped(3, textStart(msg[:5]), cont(msg[5:10]), ping([]byte("p1")), cont(msg[10:15]), cont(msg[15:20]), ping([]byte("p2")), contFin(msg[20:])),
			want: []string{"pong-frame p1", "pong-frame p2", "pong frag"}},
		{id: "5.21/empty-fragments", send: sendFrames(textStart(nil), cont(nil), cont(msg), contFin(nil)), want: []string{"pong frag"}},
		{id: "5.22/close-between-fragments", send: sendFrames(textStart(msg[:10]), closeF(closeBody(1000, "")), contFin(msg[10:])), close: 1000},
		{id: "5.23/unmasked-continuation", send: sendFrames(textStart(msg[:10]), frame{fin: true, op: ws.OpContinuation, payload: msg[10:], unmasked: true}), close: 1002},
		{id: "5.24/binary-fragmented", send: sendFrames(frame{op: ws.OpBinary, payload: []byte{1}}, contFin([]byte{2})), close: 1003},
	}
	// Every fragment size, with a control frame (ping, unsolicited pong or
	// none) after every fragment or every third.
	for _, size := range []int{1, 2, 3, 7, 16, 64, 127, 299, 300, 301} {
		frags := fragmented(msg, size)
		for _, ctl := range []struct {
			name string
			f    frame
			ans  string
		}{{"none", frame{}, ""}, {"ping", ping([]byte("c")), "pong-frame c"}, {"pong", pong([]byte("u")), ""}} {
			for _, every := range []int{1, 3} {
				frames, want := frags, []string(nil)
				if ctl.name != "none" {
					frames = interleave(frags, every, ctl.f)
					if ctl.ans != "" {
						want = repeat(ctl.ans, len(frames)-len(frags))
					}
				} else if every == 3 {
					continue
				}
				cs = append(cs, confCase{
					id:   fmt.Sprintf("5.30/size-%d-%s-every-%d", size, ctl.name, every),
					send: sendFrames(frames...),
					want: append(want, "pong frag"),
				})
			}
		}
	}
	return cs
}

// utf8Sequence is one UTF-8 test sequence of Autobahn's section 6 (after
// Markus Kuhn's decoder capability test), classified by hand. The control
// characters of its tests are left out: a JSON string cannot hold them
// raw, so they would fail as JSON, not as UTF-8.
type utf8Sequence struct {
	name  string
	s     string
	valid bool
}

var utf8Sequences = []utf8Sequence{
	{"6.2/hello", "Hello-µ@ßöäüàá-UTF-8!!", true},
	{"6.5.1/kosme", "κόσμε", true},
	{"6.6/kosme-prefixes-ok", "κόσ", true},
	{"6.7.1/first-1-byte-after-controls", " ", true},
	{"6.7.2/first-2-byte", "\u0080", true},
	{"6.7.3/first-3-byte", "\u0800", true},
	{"6.7.4/first-4-byte", "\U00010000", true},
	{"6.9.1/last-1-byte", "\x7f", true},
	{"6.9.2/last-2-byte", "\u07ff", true},
	{"6.9.3/last-3-byte", "\uffff", true},
	{"6.9.4/last-4-byte", "\U0010ffff", true},
	{"6.11.1/last-before-surrogates", "\ud7ff", true},
	{"6.11.2/first-after-surrogates", "\ue000", true},
	{"6.11.3/replacement-character", "\ufffd", true},
	{"6.11.4/noncharacter-fffe", "\ufffe", true},
	{"6.11.5/noncharacter-fdd0", "\ufdd0", true},
	{"6.11.6/line-separator", "\u2028", true},
	{"6.11.7/emoji", "\U0001F600 \U0001F44D\U0001F3FD", true},
	{"6.11.8/cjk", "漢字かなカナ한국어", true},

	{"6.3.1/surrogate-inside-text", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", false},
	{"6.8.1/5-byte-sequence", "\xf8\x88\x80\x80\x80", false},
	{"6.8.2/6-byte-sequence", "\xfc\x84\x80\x80\x80\x80", false},
	{"6.10.1/above-10ffff", "\xf4\x90\x80\x80", false},
	{"6.10.2/f5-lead", "\xf5\x80\x80\x80", false},
	{"6.10.3/last-5-byte", "\xfb\xbf\xbf\xbf\xbf", false},
	{"6.10.4/last-6-byte", "\xfd\xbf\xbf\xbf\xbf\xbf", false},
	{"6.12.1/first-continuation", "\x80", false},
	{"6.12.2/last-continuation", "\xbf", false},
	{"6.12.3/two-continuations", "\x80\xbf", false},
	{"6.12.4/three-continuations", "\x80\xbf\x80", false},
	{"6.12.8/all-continuations", func() string {
		var b []byte
		for c := 0x80; c <= 0xbf; c++ {
			b = append(b, byte(c))
		}
		return string(b)
	}(), false},
	{"6.13.1/lonely-2-byte-leads", "\xc0 \xc1 \xc2 \xdf ", false},
	{"6.13.2/lonely-3-byte-leads", "\xe0 \xef ", false},
	{"6.13.3/lonely-4-byte-leads", "\xf0 \xf7 ", false},
	{"6.13.4/lonely-5-byte-leads", "\xf8 \xfb ", false},
	{"6.13.5/lonely-6-byte-leads", "\xfc \xfd ", false},
	{"6.14.1/2-byte-last-missing", "\xc2", false},
	{"6.14.2/3-byte-last-missing", "\xe0\xa0", false},
	{"6.14.3/4-byte-last-missing", "\xf0\x90\x80", false},
	{"6.14.4/2-byte-max-last-missing", "\xdf", false},
	{"6.14.5/3-byte-max-last-missing", "\xef\xbf", false},
	{"6.14.6/4-byte-max-last-missing", "\xf4\x8f\xbf", false},
	{"6.15.1/incomplete-concatenated", "\xc2\xe0\xa0\xf0\x90\x80\xdf\xef\xbf\xf4\x8f\xbf", false},
	{"6.16.1/byte-fe", "\xfe", false},
	{"6.16.2/byte-ff", "\xff", false},
	{"6.16.3/fe-fe-ff-ff", "\xfe\xfe\xff\xff", false},
	{"6.17.1/overlong-slash-2", "\xc0\xaf", false},
	{"6.17.2/overlong-slash-3", "\xe0\x80\xaf", false},
	{"6.17.3/overlong-slash-4", "\xf0\x80\x80\xaf", false},
	{"6.17.4/overlong-slash-5", "\xf8\x80\x80\x80\xaf", false},
	{"6.17.5/overlong-slash-6", "\xfc\x80\x80\x80\x80\xaf", false},
	{"6.18.1/max-overlong-2", "\xc1\xbf", false},
	{"6.18.2/max-overlong-3", "\xe0\x9f\xbf", false},
	{"6.18.3/max-overlong-4", "\xf0\x8f\xbf\xbf", false},
	{"6.19.1/overlong-nul-2", "\xc0\x80", false},
	{"6.19.2/overlong-nul-3", "\xe0\x80\x80", false},
	{"6.19.3/overlong-nul-4", "\xf0\x80\x80\x80", false},
	{"6.20.1/surrogate-d800", "\xed\xa0\x80", false},
	{"6.20.2/surrogate-db7f", "\xed\xad\xbf", false},
	{"6.20.3/surrogate-db80", "\xed\xae\x80", false},
	{"6.20.4/surrogate-dbff", "\xed\xaf\xbf", false},
	{"6.20.5/surrogate-dc00", "\xed\xb0\x80", false},
	{"6.20.6/surrogate-df80", "\xed\xbe\x80", false},
	{"6.20.7/surrogate-dfff", "\xed\xbf\xbf", false},
	{"6.21.1/surrogate-pair-d800-dc00", "\xed\xa0\x80\xed\xb0\x80", false},
	{"6.21.2/surrogate-pair-d800-dfff", "\xed\xa0\x80\xed\xbf\xbf", false},
	{"6.21.3/surrogate-pair-dbff-dc00", "\xed\xaf\xbf\xed\xb0\x80", false},
	{"6.21.4/surrogate-pair-dbff-dfff", "\xed\xaf\xbf\xed\xbf\xbf", false},
	{"6.22.1/valid-then-invalid-at-end", "κόσμε\xed", false},
	{"6.22.2/invalid-at-start", "\xffκόσμε", false},
}

// Section 6: UTF-8 in text messages. Each sequence goes in a ping's ref
// and is sent whole, split into two fragments at every byte position of
// the message, one byte per fragment, and one byte per TCP write. A valid
// sequence is answered with its ref; an invalid one closes with 1007 (the
// server validates the whole message, which RFC 6455 allows).
func utf8Cases(t testing.TB) []confCase {
	var cs []confCase
	for _, seq := range utf8Sequences {
		if utf8.ValidString(seq.s) != seq.valid {
			t.Fatalf("%s: classified valid=%v, but utf8.ValidString says otherwise", seq.name, seq.valid)
		}
		msg := cmd(seq.s, 0)
		add := func(variant string, send func(c *client)) {
			c := confCase{id: seq.name + "/" + variant, send: send}
			if seq.valid {
				c.want = []string{"pong " + seq.s}
			} else {
				c.close = 1007
			}
			cs = append(cs, c)
		}
		add("whole", sendFrames(text(msg)))
		for k := 0; k <= len(msg); k++ {
			add(fmt.Sprintf("split-at-%d", k), sendFrames(textStart(msg[:k]), contFin(msg[k:])))
		}
		add("1-byte-fragments", sendFrames(fragmented(msg, 1)...))
		add("1-byte-writes", chopped(1, text(msg)))
		// Valid or not, a close reason is UTF-8-checked too.
		c := confCase{id: seq.name + "/as-close-reason", send: sendFrames(closeF(closeBody(1000, seq.s)))}
		if seq.valid {
			c.close = 1000
		} else {
			c.close = 1007
		}
		if len(closeBody(1000, seq.s)) <= 125 {
			cs = append(cs, c)
		}
	}
	return cs
}

// validCloseCode is RFC 6455 §7.4 with the IANA registry, as PROTOCOL.md
// states it: 1000–1003, 1007–1014 and 3000–4999 may be sent by a client.
func validCloseCode(code int) bool {
	return code >= 1000 && code <= 1003 || code >= 1007 && code <= 1014 || code >= 3000 && code <= 4999
}

// Section 7: closing. Every code from 0 to 5000 (and the largest ones),
// payload lengths, reasons, and frames after the close.
func closeCases(lo, hi int) []confCase {
	var cs []confCase
	for code := lo; code <= hi; code++ {
		c := confCase{id: fmt.Sprintf("7.7/code-%d", code), send: sendFrames(closeF(closeBody(uint16(code), "")))}
		if validCloseCode(code) {
			c.close = ws.StatusCode(code)
		} else {
			c.close = 1002
		}
		cs = append(cs, c)
	}
	return cs
}

func closeHandlingCases() []confCase {
	cs := closeCases(5001, 5001)
	cs = append(cs, closeCases(65534, 65535)...)
	reason123 := strings.Repeat("r", 123)
	cs = append(cs,
		confCase{id: "7.1.1/message-then-close", send: sendFrames(text(cmd("m", 0)), closeF(closeBody(1000, ""))), want: []string{"pong m"}, close: 1000},
		confCase{id: "7.1.2/close-twice", send: sendFrames(closeF(closeBody(1000, "")), closeF(closeBody(1001, ""))), close: 1000},
		confCase{id: "7.1.3/ping-after-close", send: sendFrames(closeF(closeBody(1000, "")), ping([]byte("late"))), close: 1000},
		confCase{id: "7.1.4/message-after-close", send: sendFrames(closeF(closeBody(1000, "")), text(cmd("late", 0))), close: 1000},
		confCase{id: "7.1.5/close-inside-a-fragmented-message", send: sendFrames(textStart([]byte(`{"op":`)), closeF(closeBody(1000, "")), contFin([]byte(`"ping"}`))), close: 1000},
		confCase{id: "7.1.6/large-message-then-close", send: sendFrames(text(cmd("big", 200000)), closeF(closeBody(1000, ""))), want: []string{"pong big"}, close: 1000},
		confCase{id: "7.3.1/empty-payload", send: sendFrames(closeF(nil)), close: 1000},
		confCase{id: "7.3.2/one-byte-payload", send: sendFrames(closeF([]byte{0x03})), close: 1002},
		confCase{id: "7.3.3/code-only", send: sendFrames(closeF(closeBody(1000, ""))), close: 1000},
		confCase{id: "7.3.4/code-and-reason", send: sendFrames(closeF(closeBody(1000, "Hello World!"))), close: 1000},
		confCase{id: "7.3.5/payload-125", send: sendFrames(closeF(closeBody(1000, reason123))), close: 1000},
		confCase{id: "7.3.6/payload-126", send: sendFrames(closeF(closeBody(1000, reason123+"r"))), close: 1002},
		confCase{id: "7.3.7/payload-125-chopped", send: chopped(1, closeF(closeBody(3000, reason123))), close: 3000},
		confCase{id: "7.5.1/reason-not-utf8", send: sendFrames(closeF(closeBody(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"))), close: 1007},
		confCase{id: "7.5.2/invalid-code-and-bad-reason", send: sendFrames(closeF(closeBody(1005, "\xff"))), close: 1002},
		confCase{id: "7.6.1/unmasked-close", send: sendFrames(frame{fin: true, op: ws.OpClose, payload: closeBody(1000, ""), unmasked: true}), close: 1002},
	)
	return cs
}

// Sections 9 and 10: messages of the 1 MiB class, whole and in fragments of
// many sizes, up to the configured maximum (inclusive), and one byte over
// it.
func limitCases() []confCase {
	var cs []confCase
	for _, n := range []int{64 << 10, 256 << 10, confMaxMessage} {
		cs = append(cs, confCase{id: fmt.Sprintf("9.1/text-%d-whole", n), send: sendFrames(text(cmd("big", n))), want: []string{"pong big"}})
		for _, size := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20} {
			if size > n {
				continue
			}
			cs = append(cs, confCase{
				id:   fmt.Sprintf("9.4/text-%d-in-fragments-of-%d", n, size),
				send: sendFrames(fragmented(cmd("big", n), size)...),
				want: []string{"pong big"},
			})
		}
	}
	over := cmd("over", confMaxMessage+1)
	cs = append(cs,
		confCase{id: "9.2/text-over-the-limit-whole", send: sendFrames(text(over)), close: 1009},
		confCase{id: "9.2/text-over-the-limit-in-64k-fragments", send: sendFrames(fragmented(over, 64<<10)...), close: 1009},
		confCase{id: "9.2/text-over-the-limit-in-1k-fragments", send: sendFrames(fragmented(over, 1<<10)...), close: 1009},
		confCase{id: "9.2/declared-length-over-the-limit", send: func(c *client) {
			_ = c.tryWriteRaw(ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Length: confMaxMessage + 1}, nil)
		}, close: 1009},
		confCase{id: "9.7/hundred-messages-in-a-row", send: func(c *client) {
			var frames []frame
			for i := 0; i < 100; i++ {
				frames = append(frames, text(cmd("m", 1000)))
			}
			sendFrames(frames...)(c)
		}, want: repeat("pong m", 100)},
		confCase{id: "10.1.1/text-65536-in-fragments-of-1300", send: sendFrames(fragmented(cmd("auto", 65536), 1300)...), want: []string{"pong auto"}},
		confCase{id: "10.1.2/text-65536-chopped-1300", send: chopped(1300, text(cmd("auto", 65536))), want: []string{"pong auto"}},
	)
	return cs
}

// TestConformance runs every section on a server of its own; the close
// codes are spread over five servers so that no one listener sees
// thousands of connections in TIME_WAIT.
func TestConformance(t *testing.T) {
	t.Parallel()
	sections := []struct {
		name  string
		cases func(t testing.TB) []confCase
	}{
		{"1-framing", func(testing.TB) []confCase { return framingCases() }},
		{"2-pings", func(testing.TB) []confCase { return pingCases() }},
		{"3-reserved-bits", func(testing.TB) []confCase { return reservedBitCases() }},
		{"4-opcodes", func(testing.TB) []confCase { return opcodeCases() }},
		{"5-fragmentation", func(testing.TB) []confCase { return fragmentationCases() }},
		{"6-utf8", utf8Cases},
		{"7-close", func(testing.TB) []confCase { return closeHandlingCases() }},
		{"9-10-limits", func(testing.TB) []confCase { return limitCases() }},
	}
	for i := 0; i < 5; i++ {
		lo, hi := i*1000, i*1000+999
		if i == 4 {
			hi = 5000
		}
		sections = append(sections, struct {
			name  string
			cases func(t testing.TB) []confCase
		}{fmt.Sprintf("7-close-codes-%d-%d", lo, hi), func(testing.TB) []confCase { return closeCases(lo, hi) }})
	}
	// Every case runs with both reader models: idle sessions on the
	// poller (the default on Linux), and a reader goroutine per session.
	for _, readers := range []struct {
		name       string
		goroutines bool
	}{{"poll", false}, {"goroutine-readers", true}} {
		t.Run(readers.name, func(t *testing.T) {
			t.Parallel()
			for _, s := range sections {
				t.Run(s.name, func(t *testing.T) {
					t.Parallel()
					runConf(t, newConfHarness(t, readers.goroutines), s.cases(t))
				})
			}
		})
	}
	t.Cleanup(func() {
		if !t.Failed() {
			t.Logf("%d conformance cases", confCount.Load())
		}
	})
}
