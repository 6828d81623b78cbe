package ws_test

// permessage-deflate's failures: what RFC 7692 and the message limit
// say a server does with bad compressed input, each an exact close code.

import (
	"bytes"
	"compress/flate"
	"fmt"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// TestCompressionFailures: each bad input closes the session with its
// code, under both reader models.
func TestCompressionFailures(t *testing.T) {
	t.Parallel()
	const limit = 4096
	// bomb is 10 MB of zeros compressed, about 10 KB.
	var bomb bytes.Buffer
	zw, _ := flate.NewWriter(&bomb, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 10 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Flush()
	bombPayload := bytes.TrimSuffix(bomb.Bytes(), deflateTrailer)
	// exactly builds a ping command of n bytes, JSON whitespace padded.
	exactly := func(n int) []byte {
		cmd := `{"op":"ping","ref":"x"}`
		return []byte(cmd[:len(cmd)-1] + strings.Repeat(" ", n-len(cmd)) + "}")
	}
	cases := []struct {
		name   string
		offer  string // "": none
		frames func(d *clientDeflater) []ws.Frame
		close  ws.StatusCode
	}{
		{"RSV1 without negotiation", "", func(d *clientDeflater) []ws.Frame {
			return []ws.Frame{compressedText(d.compress([]byte(`{"op":"ping"}`)), true)}
		}, 1002},
		{"RSV1 on a ping", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			f := ws.NewPingFrame([]byte("x"))
			f.Header.Rsv = ws.Rsv(true, false, false)
			return []ws.Frame{f}
		}, 1002},
		{"RSV1 on a close", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			f := ws.NewCloseFrame(closeBody(1000, ""))
			f.Header.Rsv = ws.Rsv(true, false, false)
			return []ws.Frame{f}
		}, 1002},
		{"RSV1 on a continuation", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			p := d.compress([]byte(`{"op":"ping","ref":"continued"}`))
			cont := ws.NewFrame(ws.OpContinuation, true, p[4:])
			cont.Header.Rsv = ws.Rsv(true, false, false)
			return []ws.Frame{compressedText(p[:4], false), cont}
		}, 1002},
		{"RSV2 with compression", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			f := ws.NewTextFrame([]byte(`{"op":"ping"}`))
			f.Header.Rsv = ws.Rsv(false, true, false)
			return []ws.Frame{f}
		}, 1002},
		{"RSV3 on a compressed message", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			f := compressedText(d.compress([]byte(`{"op":"ping"}`)), true)
			f.Header.Rsv = ws.Rsv(true, false, true)
			return []ws.Frame{f}
		}, 1002},
		{"reserved block type", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			return []ws.Frame{compressedText([]byte{0xff, 0xff, 0xff}, true)}
		}, 1007},
		{"stored block with a bad length check", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			return []ws.Frame{compressedText([]byte{0x00, 0x05, 0x00, 0x00, 0x00, 'h', 'e', 'l', 'l', 'o'}, true)}
		}, 1007},
		{"compressed data cut short", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			p := d.compress([]byte(strings.Repeat(`{"op":"ping","ref":"abcdefghijklmnopqrstuvwxyz"}`, 20)))
			return []ws.Frame{compressedText(p[:len(p)/2], true)}
		}, 1007},
		{"empty compressed payload", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			return []ws.Frame{compressedText(nil, true)}
		}, 1007},
		{"inflates to invalid UTF-8", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			return []ws.Frame{compressedText(d.compress([]byte("{\"op\":\"ping\",\"ref\":\"\xff\xfe\"}")), true)}
		}, 1007},
		{"inflates to no JSON object", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			return []ws.Frame{compressedText(d.compress([]byte(`[1,2,3]`)), true)}
		}, 1007},
		{"decompression bomb", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			return []ws.Frame{compressedText(bombPayload, true)}
		}, 1009},
		{"decompression bomb in fragments", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			n := len(bombPayload) / 2
			return []ws.Frame{compressedText(bombPayload[:n], false), ws.NewFrame(ws.OpContinuation, true, bombPayload[n:])}
		}, 1009},
		{"inflates to one byte over the limit", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			return []ws.Frame{compressedText(d.compress(exactly(limit+1)), true)}
		}, 1009},
		{"compressed frame far over the limit", "permessage-deflate", func(d *clientDeflater) []ws.Frame {
			// Stored blocks: the wire size alone is over the bound.
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, flate.NoCompression)
			_, _ = w.Write(exactly(2 * limit))
			_ = w.Flush()
			return []ws.Frame{compressedText(bytes.TrimSuffix(buf.Bytes(), deflateTrailer), true)}
		}, 1009},
	}
	for _, goroutines := range []bool{false, true} {
		h := newDeflateHarness(t, wsserver.Config{GoroutineReaders: goroutines, MaxMessageSize: limit})
		for _, tc := range cases {
			t.Run(fmt.Sprintf("goroutines=%v/%s", goroutines, tc.name), func(t *testing.T) {
				t.Parallel()
				var c *client
				if tc.offer == "" {
					c, _ = h.dialOffer(t)
				} else {
					c, _ = h.dialOffer(t, tc.offer)
				}
				c.expectDeflate(tc.offer != "", "welcome")
				for _, f := range tc.frames(newClientDeflater(false)) {
					if err := c.tryWriteRaw(withMask(f), f.Payload); err != nil {
						break // the server may close before the last frame
					}
				}
				c.expectClose(tc.close, "")
			})
		}
	}
}

// withMask returns f's header, masked.
func withMask(f ws.Frame) ws.Header {
	h := f.Header
	h.Masked = true
	return h
}

// TestCompressedMessageAtTheLimit: a compressed message that inflates to
// exactly MaxMessageSize bytes is accepted; its wire size is less.
func TestCompressedMessageAtTheLimit(t *testing.T) {
	t.Parallel()
	const limit = 4096
	h := newDeflateHarness(t, wsserver.Config{MaxMessageSize: limit})
	c, _ := h.dialOffer(t, "permessage-deflate")
	c.expectDeflate(true, "welcome")
	cmd := `{"op":"ping","ref":"at-the-limit"}`
	msg := cmd[:len(cmd)-1] + strings.Repeat(" ", limit-len(cmd)) + "}"
	// Stored: the compressed payload is larger than the message.
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.NoCompression)
	_, _ = w.Write([]byte(msg))
	_ = w.Flush()
	stored := bytes.TrimSuffix(buf.Bytes(), deflateTrailer)
	if len(stored) <= limit {
		t.Fatalf("stored payload of %d bytes: want more than the limit", len(stored))
	}
	c.writeFrame(compressedText(stored, true))
	if _, e := c.expectDeflate(true, "pong"); e.Ref != "at-the-limit" {
		t.Fatalf("pong ref = %q", e.Ref)
	}
	c.sendCompressed(newClientDeflater(false), msg)
	if _, e := c.expectDeflate(true, "pong"); e.Ref != "at-the-limit" {
		t.Fatalf("pong ref = %q", e.Ref)
	}
}
