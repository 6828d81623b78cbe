package ws_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/session"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// maskedFrames returns the wire bytes of frames, each masked as a client
// sends it.
func maskedFrames(frames ...ws.Frame) []byte {
	var buf bytes.Buffer
	for _, f := range frames {
		f.Header.Masked = true
		f.Header.Mask = ws.NewMask()
		p := bytes.Clone(f.Payload)
		ws.Cipher(p, f.Header.Mask, 0)
		_ = ws.WriteHeader(&buf, f.Header)
		buf.Write(p)
	}
	return buf.Bytes()
}

// skipServerFrames reads and drops n server frames from r without
// allocating, so that a benchmark counts the server's allocations.
func skipServerFrames(r *bufio.Reader, n int) error {
	for range n {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return err
		}
		length := int(h[1] & 0x7f)
		switch length {
		case 126:
			var l [2]byte
			if _, err := io.ReadFull(r, l[:]); err != nil {
				return err
			}
			length = int(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			if _, err := io.ReadFull(r, l[:]); err != nil {
				return err
			}
			length = int(binary.BigEndian.Uint64(l[:]))
		}
		if h[0]&0x0f != byte(ws.OpText) {
			return fmt.Errorf("server frame with opcode %#x", h[0]&0x0f)
		}
		if _, err := r.Discard(length); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkReadFrames measures what reading client frames costs a
// session, per frame: small `ping` commands 64 to a write (each answered
// with a `pong`, so the command and its answer are counted too);
// unsolicited pongs 256 to a write and one `ping` command after them,
// which cost the session nothing but reading them; and 64 KiB `ping`
// commands, one to a write. The client runs in this process, with every
// frame masked before the timer starts.
func BenchmarkReadFrames(b *testing.B) {
	pad := paddedPing("b", 64<<10)
	for _, bc := range []struct {
		name    string
		batch   []byte // one write
		frames  int    // client frames per write
		answers int    // server frames per write
	}{
		{"small-commands", bytes.Repeat(maskedFrames(ws.NewTextFrame([]byte(`{"op":"ping","ref":"b"}`))), 64), 64, 64},
		{"pongs", append(bytes.Repeat(maskedFrames(ws.NewPongFrame([]byte("pong"))), 256),
			maskedFrames(ws.NewTextFrame([]byte(`{"op":"ping","ref":"b"}`)))...), 257, 1},
		{"64KiB-commands", maskedFrames(ws.NewTextFrame(pad)), 1, 1},
	} {
		for _, readers := range []struct {
			name       string
			goroutines bool
		}{{"poll", false}, {"goroutine", true}} {
			b.Run(bc.name+"/"+readers.name, func(b *testing.B) {
				h := newHarness(b, config{ws: wsserver.Config{
					GoroutineReaders: readers.goroutines,
					Heartbeat:        time.Hour,
					OpLimits:         session.OpLimits{OpRate: -1},
				}})
				c, _ := h.dialWelcome(b)
				b.SetBytes(int64(len(bc.batch) / bc.frames))
				b.ReportAllocs()
				b.ResetTimer()
				for sent := 0; sent < b.N; sent += bc.frames {
					_ = c.conn.SetDeadline(time.Now().Add(time.Minute))
					if _, err := c.conn.Write(bc.batch); err != nil {
						b.Fatal(err)
					}
					if err := skipServerFrames(c.r, bc.answers); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
