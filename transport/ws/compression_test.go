package ws_test

// permessage-deflate (RFC 7692), in the style of the Autobahn TestSuite's
// cases 12 and 13: the negotiation of every offer a client may make, then
// messages of many sizes both ways under each accepted configuration,
// every server frame's bytes and RSV bits checked by a raw client that
// inflates on its own.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// newDeflateHarness starts a server with compression on and no address
// or command limits; goroutineReaders picks the reader model.
func newDeflateHarness(t testing.TB, cfg wsserver.Config) *harness {
	cfg.Compression = true
	cfg.OpRate, cfg.IPConnRate, cfg.IPMaxConns, cfg.MaxSessions = -1, -1, -1, -1
	return newHarness(t, config{ws: cfg})
}

// Responses the server gives (parameters in wsflate's order, no spaces).
const (
	pmdPlain = "permessage-deflate;server_no_context_takeover"
	pmdCNCT  = "permessage-deflate;server_no_context_takeover;client_no_context_takeover"
	pmdSMWB  = "permessage-deflate;server_no_context_takeover;server_max_window_bits=15"
)

// offerCase is one offer and the extension the server must answer ("":
// declined).
type offerCase struct {
	name   string
	offers []string // one Sec-WebSocket-Extensions line each
	want   string
	// takeover is whether the client may then use context takeover.
	takeover bool
}

var offerCases = []offerCase{
	{"no parameters", []string{"permessage-deflate"}, pmdPlain, true},
	{"client_no_context_takeover", []string{"permessage-deflate; client_no_context_takeover"}, pmdCNCT, false},
	{"server_no_context_takeover", []string{"permessage-deflate; server_no_context_takeover"}, pmdPlain, true},
	{"both no_context_takeover", []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover"}, pmdCNCT, false},
	{"client_max_window_bits without value", []string{"permessage-deflate; client_max_window_bits"}, pmdPlain, true},
	{"client_max_window_bits=15", []string{"permessage-deflate; client_max_window_bits=15"}, pmdPlain, true},
	{"client_max_window_bits=8", []string{"permessage-deflate; client_max_window_bits=8; client_no_context_takeover"}, pmdCNCT, false},
	{"server_max_window_bits=15", []string{"permessage-deflate; server_max_window_bits=15"}, pmdSMWB, true},
	{"server_max_window_bits=15 and the rest", []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15; client_max_window_bits=12"},
		"permessage-deflate;server_no_context_takeover;client_no_context_takeover;server_max_window_bits=15", false},
	{"chromium's offer", []string{"permessage-deflate; client_max_window_bits"}, pmdPlain, true},
	{"firefox's offer", []string{"permessage-deflate"}, pmdPlain, true},
	{"quoted value", []string{`permessage-deflate; client_max_window_bits="10"`}, pmdPlain, true},
	{"after an unknown extension", []string{"x-webkit-deflate-frame, permessage-deflate"}, pmdPlain, true},
	{"the first offer the server can honour", []string{"permessage-deflate; server_max_window_bits=10, permessage-deflate; client_no_context_takeover, permessage-deflate"}, pmdCNCT, false},
	{"one offer per header line", []string{"permessage-deflate; server_max_window_bits=9", "permessage-deflate"}, pmdPlain, true},
	{"only the first acceptable offer", []string{"permessage-deflate; client_no_context_takeover, permessage-deflate"}, pmdCNCT, false},

	// Declined: the session opens without compression.
	{"server_max_window_bits=14", []string{"permessage-deflate; server_max_window_bits=14"}, "", false},
	{"server_max_window_bits=8", []string{"permessage-deflate; server_max_window_bits=8"}, "", false},
	{"server_max_window_bits without value", []string{"permessage-deflate; server_max_window_bits"}, "", false},
	{"server_max_window_bits=16", []string{"permessage-deflate; server_max_window_bits=16"}, "", false},
	{"client_max_window_bits=7", []string{"permessage-deflate; client_max_window_bits=7"}, "", false},
	{"client_max_window_bits=abc", []string{"permessage-deflate; client_max_window_bits=abc"}, "", false},
	{"unknown parameter", []string{"permessage-deflate; foo=1"}, "", false},
	{"repeated parameter", []string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"}, "", false},
	{"no_context_takeover with a value", []string{"permessage-deflate; server_no_context_takeover=1"}, "", false},
	{"other extensions only", []string{"x-webkit-deflate-frame; no_context_takeover"}, "", false},
	{"a bad offer, then a good one", []string{"permessage-deflate; foo, permessage-deflate; server_max_window_bits=15"}, pmdSMWB, true},
}

// TestCompressionNegotiation: every offer gets the extension its case
// names, or none, and never a failed handshake; an accepted session sends
// a large message compressed and handles a compressed command, a declined
// one sends it plain.
func TestCompressionNegotiation(t *testing.T) {
	t.Parallel()
	h := newDeflateHarness(t, wsserver.Config{})
	for i, tc := range offerCases {
		t.Run(tc.name, func(t *testing.T) {
			c, res := h.dialOffer(t, tc.offers...)
			if got := strings.ReplaceAll(res.extensions, " ", ""); got != tc.want {
				t.Fatalf("Sec-WebSocket-Extensions = %q, want %q", res.extensions, tc.want)
			}
			negotiated := tc.want != ""
			if f, _ := c.expectDeflate(negotiated, "welcome"); f.compressed {
				t.Errorf("welcome (%d bytes) compressed: below the minimum size", len(f.text))
			}
			topic := "neg.t" + strconv.Itoa(i)
			c.send(`{"op":"subscribe","topic":"` + topic + `"}`)
			c.expectDeflate(negotiated, "subscribed")
			data := testkit.Prices(i, 2000)
			pub := `{"op":"publish","topic":"` + topic + `","data":` + data + `}`
			if negotiated {
				c.sendCompressed(newClientDeflater(false), pub)
			} else {
				c.send(pub)
			}
			var msg event
			var msgFrame wireFrame
			for msg.Type != "message" {
				msgFrame, msg = c.nextDeflate(negotiated)
			}
			if msgFrame.compressed != negotiated {
				t.Errorf("message frame compressed = %v, want %v", msgFrame.compressed, negotiated)
			}
			if negotiated && len(msgFrame.Payload) >= len(msgFrame.text)/2 {
				t.Errorf("compressed %d bytes into %d", len(msgFrame.text), len(msgFrame.Payload))
			}
			if string(msg.Data) != data {
				t.Errorf("data = %.80s…, want %.80s…", msg.Data, data)
			}
			c.sendClose(closeBody(1000, ""))
			c.expectClose(1000, "")
		})
	}
}

// TestCompressionOffIgnoresOffers: with Compression off the offer is not
// answered and frames never have RSV1.
func TestCompressionOffIgnoresOffers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	c, res := h.dialOffer(t, "permessage-deflate; client_max_window_bits")
	if res.extensions != "" {
		t.Fatalf("Sec-WebSocket-Extensions = %q with compression off", res.extensions)
	}
	c.expect("welcome")
	c.subscribe("off.t")
	h.mustPublish(t, "off.t", testkit.Prices(1, 4000))
	if e := c.expect("message"); len(e.Data) < 3900 {
		t.Fatalf("message data of %d bytes", len(e.Data))
	}
}

// TestCompressionMalformedHeader: an Extensions header that is not even
// a list of extensions (RFC 6455 section 9.1) fails the handshake with
// 400, as any malformed handshake; malformed parameters only decline.
func TestCompressionMalformedHeader(t *testing.T) {
	t.Parallel()
	h := newDeflateHarness(t, wsserver.Config{})
	_, res := h.tryOffer(t, "permessage-deflate; =x")
	if res.status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", res.status)
	}
}

// TestCompressionThreshold: payloads one byte below the minimum size go
// plain (RSV1 clear) and byte for byte what a plain session gets; from
// the minimum on they go compressed and inflate to the plain payload.
func TestCompressionThreshold(t *testing.T) {
	t.Parallel()
	const minSize = 300
	// A fixed clock: the frames' time field keeps its length.
	now := func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC) }
	h := newHarness(t, config{ws: wsserver.Config{Compression: true, CompressionMinSize: minSize}, broker: broker.Config{Now: now}})
	z, _ := h.dialOffer(t, "permessage-deflate")
	z.expectDeflate(true, "welcome")
	z.send(`{"op":"subscribe","topic":"th.t"}`)
	z.expectDeflate(true, "subscribed")
	plain, _ := h.dialWelcome(t)
	plain.subscribe("th.t")

	// The plain payload's length is the data's plus a fixed part: learn it.
	h.mustPublish(t, "th.t", `""`)
	base := len(plain.next().Raw) - 2
	z.expectDeflate(true, "message")
	for _, size := range []int{minSize - 2, minSize - 1, minSize, minSize + 1, minSize + 100} {
		inner := size - base - 2
		data := `"` + strings.Repeat("ab", inner/2) + strings.Repeat("c", inner%2) + `"`
		h.mustPublish(t, "th.t", data)
		pf, err := plain.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		if len(pf.Payload) != size {
			t.Fatalf("plain payload of %d bytes, want %d", len(pf.Payload), size)
		}
		zf, _ := z.expectDeflate(true, "message")
		if want := size >= minSize; zf.compressed != want {
			t.Errorf("payload of %d bytes: compressed = %v, want %v", size, zf.compressed, want)
		}
		if !bytes.Equal(zf.text, pf.Payload) {
			t.Errorf("payload of %d bytes: got %q, want the plain session's %q", size, zf.text, pf.Payload)
		}
		if !zf.compressed && !bytes.Equal(zf.Payload, pf.Payload) {
			t.Errorf("payload of %d bytes: the uncompressed frame differs from the plain session's", size)
		}
	}
}

// TestCompressionMessagesBothWays (Autobahn 12.x/13.x): under each
// configuration a client may negotiate, messages of many sizes published
// compressed by the client (with context takeover when its offer allows
// it, one deflate stream across messages) come back to it compressed,
// each inflating to what was published; plain messages in between do not
// disturb the client's compression context. Both reader models.
func TestCompressionMessagesBothWays(t *testing.T) {
	t.Parallel()
	configs := []offerCase{offerCases[0], offerCases[1], offerCases[4], offerCases[7]}
	sizes := []int{16, 64, 200, 256, 1000, 4096, 16000, 60000}
	for _, goroutines := range []bool{false, true} {
		h := newDeflateHarness(t, wsserver.Config{GoroutineReaders: goroutines, MaxMessageSize: 1 << 17})
		for ci, tc := range configs {
			t.Run(fmt.Sprintf("goroutines=%v/%s", goroutines, tc.name), func(t *testing.T) {
				t.Parallel()
				c, res := h.dialOffer(t, tc.offers...)
				if strings.ReplaceAll(res.extensions, " ", "") != tc.want {
					t.Fatalf("Sec-WebSocket-Extensions = %q, want %q", res.extensions, tc.want)
				}
				c.expectDeflate(true, "welcome")
				topic := "both.t" + strconv.Itoa(ci)
				c.send(`{"op":"subscribe","topic":"` + topic + `"}`)
				c.expectDeflate(true, "subscribed")
				d := newClientDeflater(tc.takeover)
				for round := range 3 {
					for si, size := range sizes {
						data := testkit.Prices(si, size)
						pub := `{"op":"publish","topic":"` + topic + `","data":` + data + `}`
						if (round+si)%5 == 4 {
							c.send(pub) // plain, outside the compression context
						} else {
							c.sendCompressed(d, pub)
						}
						// The answer and the message, in either order.
						f, e := c.nextDeflate(true)
						if e.Type == "published" {
							f, e = c.expectDeflate(true, "message")
						} else {
							c.expectDeflate(true, "published")
						}
						if string(e.Data) != data {
							t.Fatalf("round %d, %d bytes: data differs", round, size)
						}
						if wantZ := len(f.text) >= wsserver.DefaultCompressionMinSize; f.compressed != wantZ {
							t.Errorf("%d-byte message: compressed = %v, want %v", len(f.text), f.compressed, wantZ)
						}
					}
				}
				c.sendClose(closeBody(1000, ""))
				c.expectClose(1000, "")
			})
		}
	}
}

// TestCompressedFragmentedMessage: a compressed message in fragments
// (RSV1 on the first only), with a ping between them, is inflated whole.
func TestCompressedFragmentedMessage(t *testing.T) {
	t.Parallel()
	for _, goroutines := range []bool{false, true} {
		t.Run(fmt.Sprintf("goroutines=%v", goroutines), func(t *testing.T) {
			t.Parallel()
			h := newDeflateHarness(t, wsserver.Config{GoroutineReaders: goroutines})
			c, _ := h.dialOffer(t, "permessage-deflate")
			c.expectDeflate(true, "welcome")
			ref := strings.Repeat("fragmented-", 100)
			p := newClientDeflater(false).compress([]byte(`{"op":"ping","ref":"` + ref + `"}`))
			a, b := len(p)/3, 2*len(p)/3
			c.writeFrame(compressedText(p[:a], false))
			c.writeFrame(ws.NewFrame(ws.OpContinuation, false, p[a:b]))
			c.writeFrame(ws.NewPingFrame([]byte("between")))
			c.writeFrame(ws.NewFrame(ws.OpContinuation, true, p[b:]))
			f, err := c.readDeflateFrame(true)
			if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "between" {
				t.Fatalf("want the pong of the ping between fragments, got %v %v", describe(f.Frame), err)
			}
			f, e := c.expectDeflate(true, "pong")
			if e.Ref != ref {
				t.Fatalf("pong ref = %.40q…", e.Ref)
			}
			if !f.compressed {
				t.Errorf("a %d-byte reply of the session's own went uncompressed", len(f.text))
			}
		})
	}
}

// TestCompressedMessageSplitAcrossReads: a large compressed frame whose
// bytes come in many writes is read as one message.
func TestCompressedMessageSplitAcrossReads(t *testing.T) {
	t.Parallel()
	h := newDeflateHarness(t, wsserver.Config{})
	c, _ := h.dialOffer(t, "permessage-deflate")
	c.expectDeflate(true, "welcome")
	// Random letters: the frame stays larger than two read buffers.
	rnd := rand.New(rand.NewPCG(1, 2))
	letters := make([]byte, 30000)
	for i := range letters {
		letters[i] = 'a' + byte(rnd.IntN(26))
	}
	ref := string(letters)
	p := newClientDeflater(false).compress([]byte(`{"op":"ping","ref":"` + ref + `"}`))
	if len(p) < 8192 {
		t.Fatalf("compressed to %d bytes: want a frame over two reads", len(p))
	}
	h2 := compressedText(p, true).Header
	h2.Masked, h2.Mask = true, ws.NewMask()
	masked := bytes.Clone(p)
	ws.Cipher(masked, h2.Mask, 0)
	var wire bytes.Buffer
	_ = ws.WriteHeader(&wire, h2)
	wire.Write(masked)
	for b := wire.Bytes(); len(b) > 0; {
		n := min(len(b), 1000)
		if _, err := c.conn.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	if _, e := c.expectDeflate(true, "pong"); e.Ref != ref {
		t.Fatalf("pong ref differs")
	}
}
